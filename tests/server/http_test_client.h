// A loopback HTTP client for the server tests: a Server run in a thread on an ephemeral port,
// raw sockets with timeouts (a bug must never hang the suite), and a response reader that
// understands Content-Length, chunked and read-until-close bodies. Test-only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "server/http.h"

namespace lmkit::http::test {

// A Server on an ephemeral port, run() in a thread; stopped and joined on destruction.
struct Running {
  Server server;
  std::thread thread;
  Running(Server::Options opt, Handler h) : server(init(std::move(opt)), std::move(h)) {
    server.start();
    thread = std::thread([this] { server.run(); });
  }
  ~Running() {
    server.stop();
    if (thread.joinable()) thread.join();
  }
  static Server::Options init(Server::Options opt) {
    opt.host = "127.0.0.1";
    opt.port = 0;
    return opt;
  }
};

inline int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{5, 0};  // a bug must never hang the suite
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

inline void send_str(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    ASSERT_GT(n, 0) << std::strerror(errno);
    s.remove_prefix(size_t(n));
  }
}

struct ClientResponse {
  int status = 0;
  std::string head;  // status line and fields, as received
  std::string body;  // decoded
  bool chunked = false;
  std::vector<std::string> chunks;
  bool has(std::string_view field_line) const {
    return head.find(std::string("\r\n") + std::string(field_line) + "\r\n") != std::string::npos;
  }
};

// Reads one response from fd (buffering leftovers in `buf`): Content-Length, chunked, or until
// close. status 0 when the connection ended before a status line.
inline ClientResponse read_response(int fd, std::string &buf) {
  ClientResponse r;
  auto fill = [&]() {
    char tmp[4096];
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf.append(tmp, size_t(n));
    return true;
  };
  size_t end;
  while ((end = buf.find("\r\n\r\n")) == std::string::npos)
    if (!fill()) return r;
  r.head = buf.substr(0, end + 2);
  buf.erase(0, end + 4);
  r.status = std::atoi(r.head.c_str() + 9);
  if (r.status / 100 == 1) return r;  // interim: no body
  std::string lower = r.head;
  for (char &c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  size_t cl = lower.find("\r\ncontent-length: ");
  if (lower.find("\r\ntransfer-encoding: chunked\r\n") != std::string::npos) {
    r.chunked = true;
    for (;;) {
      size_t eol;
      while ((eol = buf.find("\r\n")) == std::string::npos)
        if (!fill()) return r;
      size_t size = std::stoul(buf.substr(0, eol), nullptr, 16);
      while (buf.size() < eol + 2 + size + 2)
        if (!fill()) return r;
      EXPECT_EQ(buf.substr(eol + 2 + size, 2), "\r\n");
      if (size == 0) {
        buf.erase(0, eol + 4);
        return r;
      }
      r.chunks.push_back(buf.substr(eol + 2, size));
      r.body += r.chunks.back();
      buf.erase(0, eol + 2 + size + 2);
    }
  } else if (cl != std::string::npos) {
    size_t n = std::stoul(lower.substr(cl + 18));
    while (buf.size() < n)
      if (!fill()) return r;
    r.body = buf.substr(0, n);
    buf.erase(0, n);
  } else {
    while (fill()) {
    }
    r.body = std::move(buf);
    buf.clear();
  }
  return r;
}

// True when the server closed the connection (EOF) within the socket's receive timeout.
inline bool closed_by_server(int fd) {
  char c;
  return ::recv(fd, &c, 1, 0) == 0;
}

// One request on a fresh connection ("Connection: close" is added): the whole response.
inline ClientResponse request(int port, std::string_view method, std::string_view path,
                              std::string_view body = {}, std::string_view extra_headers = {}) {
  int fd = connect_to(port);
  if (fd < 0) return {};
  std::string req = std::string(method) + " " + std::string(path) +
                    " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
                    std::string(extra_headers);
  if (!body.empty() || method == "POST")
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n";
  req += body;
  send_str(fd, req);
  std::string buf;
  ClientResponse r = read_response(fd, buf);
  ::close(fd);
  return r;
}

}  // namespace lmkit::http::test
