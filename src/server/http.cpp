// lmkit::http implementation: the request parser (pure functions over a byte buffer) and the
// socket server (POSIX sockets, poll, one thread per connection). Not an HTTP client, and nothing
// here interprets request bodies.
#include "server/http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace lmkit::http {

// ---------------------------------------------------------------------------------------------
// Parsing

namespace {

using Kind = ParseResult::Kind;

ParseResult need_more() {
  return {};
}

ParseResult error(int status, std::string message) {
  ParseResult r;
  r.kind = Kind::Error;
  r.status = status;
  r.message = std::move(message);
  return r;
}

// RFC 9110 tchar.
bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

// Field-value characters: VCHAR, obs-text, SP, HTAB.
bool is_value_char(unsigned char c) {
  return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f);
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? char(c + 32) : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls fn(element) for each trimmed, non-empty element of a comma-separated list.
template <typename Fn>
void for_each_list_item(std::string_view list, Fn &&fn) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = trim(list.substr(0, comma));
    if (!item.empty()) fn(item);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

enum class LineStatus { Ok, NeedMore, BareCR, BareLF };

// The line starting at `pos` (without its CRLF); `next` is where the following line starts.
LineStatus next_line(std::string_view buf, size_t pos, std::string_view &line, size_t &next) {
  for (size_t i = pos; i < buf.size(); ++i) {
    if (buf[i] == '\n') return LineStatus::BareLF;
    if (buf[i] == '\r') {
      if (i + 1 == buf.size()) return LineStatus::NeedMore;
      if (buf[i + 1] != '\n') return LineStatus::BareCR;
      line = buf.substr(pos, i - pos);
      next = i + 2;
      return LineStatus::Ok;
    }
  }
  return LineStatus::NeedMore;
}

ParseResult line_error(LineStatus s) {
  return error(400, s == LineStatus::BareCR ? "bare CR in the request head"
                                            : "bare LF in the request head (lines end with CRLF)");
}

// Validates one field line and appends it (name lower-cased, value trimmed).
ParseResult parse_field(std::string_view line, Headers *out) {
  if (line.front() == ' ' || line.front() == '\t')
    return error(400, "obsolete line folding in a header field");
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return error(400, "header field without ':'");
  std::string_view name = line.substr(0, colon);
  if (name.empty()) return error(400, "empty header field name");
  for (unsigned char c : name)
    if (!is_tchar(c)) return error(400, "invalid character in a header field name");
  std::string_view value = trim(line.substr(colon + 1));
  for (unsigned char c : value)
    if (!is_value_char(c)) return error(400, "invalid character in a header field value");
  if (out) {
    Header h;
    h.name.resize(name.size());
    std::transform(name.begin(), name.end(), h.name.begin(), lower);
    h.value = value;
    out->push_back(std::move(h));
  }
  ParseResult ok;
  ok.kind = Kind::Complete;
  return ok;
}

ParseResult parse_request_line(std::string_view line, Request &out) {
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return error(400, "malformed request line");
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return error(400, "malformed request line");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (method.empty()) return error(400, "malformed request line: empty method");
  for (unsigned char c : method)
    if (!is_tchar(c)) return error(400, "malformed request line: invalid method");
  if (target.empty()) return error(400, "malformed request line: empty target");
  for (unsigned char c : target)
    if (c <= 0x20 || c >= 0x7f) return error(400, "invalid character in the request target");
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !digit(version[5]) ||
      version[6] != '.' || !digit(version[7]))
    return error(400, "malformed request line: bad HTTP version");
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1'))
    return error(505, str_cat("HTTP version ", version, " is not supported (use HTTP/1.1)"));
  out.method = method;
  out.target = target;
  out.version_minor = version[7] - '0';

  std::string_view path = target;
  // absolute-form (http://host/path): keep the path.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (path.size() >= scheme.size() && iequals(path.substr(0, scheme.size()), scheme)) {
      path.remove_prefix(scheme.size());
      size_t slash = path.find_first_of("/?");
      path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
      break;
    }
  }
  size_t q = path.find('?');
  if (q != std::string_view::npos) {
    out.query = path.substr(q + 1);
    path = path.substr(0, q);
  }
  out.path = path.empty() ? std::string("/") : std::string(path);
  ParseResult ok;
  ok.kind = Kind::Complete;
  return ok;
}

constexpr size_t kMaxChunkLine = 4096;

// Decodes a chunked body starting at `pos`. Walks first (cheap, no copies) and copies only once the
// body is complete, so a caller re-parsing a growing buffer pays per chunk, not per byte.
ParseResult parse_chunked(std::string_view buf, size_t pos, const Limits &limits,
                          std::string &body) {
  std::vector<std::pair<size_t, size_t>> spans;
  uint64_t total = 0;
  for (;;) {
    std::string_view line;
    size_t next = 0;
    LineStatus ls = next_line(buf, pos, line, next);
    if (ls == LineStatus::NeedMore) {
      if (buf.size() - pos > kMaxChunkLine) return error(400, "chunk size line too long");
      return need_more();
    }
    if (ls != LineStatus::Ok) return error(400, "malformed chunk size line");
    if (line.size() > kMaxChunkLine) return error(400, "chunk size line too long");
    size_t i = 0;
    uint64_t size = 0;
    for (; i < line.size(); ++i) {
      char c = line[i];
      int d = (c >= '0' && c <= '9')   ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                       : -1;
      if (d < 0) break;
      size = size * 16 + uint64_t(d);
      if (size > limits.max_body_bytes)
        return error(
            413, str_cat("request body exceeds the limit of ", limits.max_body_bytes, " bytes"));
    }
    if (i == 0) return error(400, "malformed chunk size");
    // chunk-ext: BWS ";" ... ; any visible characters, no controls.
    std::string_view ext = line.substr(i);
    if (!ext.empty()) {
      std::string_view t = trim(ext);
      if (t.empty() || t.front() != ';') return error(400, "malformed chunk size");
      for (unsigned char c : t)
        if (!is_value_char(c)) return error(400, "invalid character in a chunk extension");
    }
    pos = next;
    if (size == 0) break;
    total += size;
    if (total > limits.max_body_bytes)
      return error(413,
                   str_cat("request body exceeds the limit of ", limits.max_body_bytes, " bytes"));
    if (spans.size() >= limits.max_chunks)
      return error(413,
                   str_cat("chunked request body has more than ", limits.max_chunks, " chunks"));
    if (buf.size() - pos < size + 2) return need_more();
    if (buf[pos + size] != '\r' || buf[pos + size + 1] != '\n')
      return error(400, "chunk data not followed by CRLF");
    spans.emplace_back(pos, size);
    pos += size + 2;
  }
  // Trailer fields: validated, then dropped.
  // Only the first max_header_bytes of the trailers are examined, so that the outcome does not
  // depend on how many bytes beyond the limit have arrived.
  size_t trailer_start = pos;
  std::string_view trailer_view = buf.substr(0, trailer_start + limits.max_header_bytes);
  for (;;) {
    std::string_view line;
    size_t next = 0;
    LineStatus ls = next_line(trailer_view, pos, line, next);
    if (ls == LineStatus::NeedMore) {
      if (buf.size() - trailer_start > limits.max_header_bytes)
        return error(431, "request trailer fields too large");
      return need_more();
    }
    if (ls != LineStatus::Ok) return line_error(ls);
    if (next - trailer_start > limits.max_header_bytes)
      return error(431, "request trailer fields too large");
    pos = next;
    if (line.empty()) break;
    ParseResult f = parse_field(line, nullptr);
    if (f.kind == Kind::Error) return f;
  }
  body.clear();
  body.reserve(size_t(total));
  for (auto [off, n] : spans) body.append(buf.data() + off, n);
  ParseResult ok;
  ok.kind = Kind::Complete;
  ok.consumed = pos;
  return ok;
}

}  // namespace

const std::string *Request::find_header(std::string_view lower_name) const {
  for (const Header &h : headers)
    if (h.name == lower_name) return &h.value;
  return nullptr;
}

std::string_view Request::header(std::string_view lower_name, std::string_view fallback) const {
  const std::string *v = find_header(lower_name);
  return v ? std::string_view(*v) : fallback;
}

ParseResult parse_request(std::string_view buf, const Limits &limits, Request &out) {
  out = Request{};
  size_t pos = 0;
  // Robustness (RFC 9112 §2.2): empty lines before the request line are ignored.
  while (buf.size() - pos >= 2 && buf[pos] == '\r' && buf[pos + 1] == '\n') {
    pos += 2;
    if (pos > limits.max_header_bytes) return error(431, "request header fields too large");
  }
  auto too_large = [&] {
    return error(431, str_cat("request header fields too large (limit ", limits.max_header_bytes,
                              " bytes)"));
  };

  // The request line, then fields up to the empty line.
  // Only the first max_header_bytes are examined: a head over the limit is a 431 however many
  // bytes of it have arrived and whatever they hold.
  std::string_view head_view = buf.substr(0, limits.max_header_bytes);
  bool have_request_line = false;
  for (;;) {
    std::string_view line;
    size_t next = 0;
    LineStatus ls = next_line(head_view, pos, line, next);
    if (ls == LineStatus::NeedMore) {
      if (buf.size() > limits.max_header_bytes) return too_large();
      return need_more();
    }
    if (ls != LineStatus::Ok) return line_error(ls);
    if (next > limits.max_header_bytes) return too_large();
    pos = next;
    if (!have_request_line) {
      ParseResult r = parse_request_line(line, out);
      if (r.kind == Kind::Error) return r;
      have_request_line = true;
      continue;
    }
    if (line.empty()) break;
    ParseResult f = parse_field(line, &out.headers);
    if (f.kind == Kind::Error) return f;
  }

  // Framing and connection semantics.
  bool close = false, keep_alive_token = false, chunked = false, expect_continue = false;
  bool has_length = false, has_te = false;
  uint64_t length = 0;
  int codings = 0;
  for (const Header &h : out.headers) {
    if (h.name == "connection") {
      for_each_list_item(h.value, [&](std::string_view t) {
        if (iequals(t, "close")) close = true;
        if (iequals(t, "keep-alive")) keep_alive_token = true;
      });
    } else if (h.name == "content-length") {
      if (h.value.empty()) return error(400, "empty Content-Length");
      uint64_t v = 0;
      for (char c : h.value) {
        if (c < '0' || c > '9') return error(400, "invalid Content-Length");
        if (v > (UINT64_MAX - 9) / 10) return error(413, "Content-Length too large");
        v = v * 10 + uint64_t(c - '0');
      }
      if (has_length && v != length) return error(400, "conflicting Content-Length fields");
      has_length = true;
      length = v;
    } else if (h.name == "transfer-encoding") {
      has_te = true;
      ParseResult bad;
      for_each_list_item(h.value, [&](std::string_view t) {
        if (bad.kind == Kind::Error) return;
        ++codings;
        if (iequals(t, "chunked")) {
          if (chunked) bad = error(400, "chunked applied twice in Transfer-Encoding");
          chunked = true;
        } else {
          bad = error(
              501, str_cat("unsupported Transfer-Encoding '", t, "' (only chunked is supported)"));
        }
      });
      if (bad.kind == Kind::Error) return bad;
    } else if (h.name == "expect") {
      if (iequals(h.value, "100-continue")) expect_continue = true;
    }
  }
  if (has_te && has_length)
    return error(400, "both Content-Length and Transfer-Encoding in one request");
  if (has_te && (!chunked || codings == 0)) return error(400, "empty Transfer-Encoding");
  out.keep_alive = out.version_minor == 1 ? !close : (keep_alive_token && !close);
  if (has_te && out.version_minor == 0) out.keep_alive = false;  // RFC 9112 §6.1

  if (chunked) {
    ParseResult r = parse_chunked(buf, pos, limits, out.body);
    if (r.kind == Kind::NeedMore) r.expect_continue = expect_continue;
    return r;
  }
  if (length > limits.max_body_bytes)
    return error(413, str_cat("request body of ", length, " bytes exceeds the limit of ",
                              limits.max_body_bytes, " bytes"));
  if (buf.size() - pos < length) {
    ParseResult r = need_more();
    r.expect_continue = expect_continue;
    return r;
  }
  out.body.assign(buf.substr(pos, size_t(length)));
  ParseResult ok;
  ok.kind = Kind::Complete;
  ok.consumed = pos + size_t(length);
  return ok;
}

const char *reason_phrase(int status) {
  // clang-format off
  static const std::pair<int, const char *> kPhrases[] = {
      {100, "Continue"}, {200, "OK"}, {201, "Created"}, {202, "Accepted"}, {204, "No Content"},
      {206, "Partial Content"}, {301, "Moved Permanently"}, {302, "Found"}, {304, "Not Modified"},
      {307, "Temporary Redirect"}, {308, "Permanent Redirect"}, {400, "Bad Request"},
      {401, "Unauthorized"}, {403, "Forbidden"}, {404, "Not Found"}, {405, "Method Not Allowed"},
      {406, "Not Acceptable"}, {408, "Request Timeout"}, {409, "Conflict"},
      {411, "Length Required"}, {413, "Content Too Large"}, {414, "URI Too Long"},
      {415, "Unsupported Media Type"}, {417, "Expectation Failed"}, {422, "Unprocessable Content"},
      {429, "Too Many Requests"}, {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"}, {501, "Not Implemented"}, {502, "Bad Gateway"},
      {503, "Service Unavailable"}, {504, "Gateway Timeout"}, {505, "HTTP Version Not Supported"},
  };
  // clang-format on
  for (const auto &[code, phrase] : kPhrases)
    if (code == status) return phrase;
  return "Unknown";
}

std::string json_quote(std::string_view s) {
  return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string error_json(int status, std::string_view message) {
  const char *type = status >= 400 && status < 500 ? "invalid_request_error" : "server_error";
  const char *code = status == 413 ? "\"request_too_large\"" : "null";
  return str_cat("{\"error\":{\"message\":", json_quote(message), ",\"type\":\"", type,
                 "\",\"param\":null,\"code\":", code, "}}");
}

// ---------------------------------------------------------------------------------------------
// Sockets

namespace {

using Clock = std::chrono::steady_clock;

int ms_until(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms <= 0 ? 0 : int(std::min<int64_t>(ms, 1 << 30));
}

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// Writes everything or fails (error, timeout from SO_SNDTIMEO, peer gone). Never raises SIGPIPE.
bool send_fully(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(size_t(n));
  }
  return true;
}

// Stops sending, reads (and drops) what the client still sends for up to `timeout`, then closes:
// closing with unread input would reset the connection and could destroy the response in flight.
void lingering_close(int fd, double timeout_s, const std::atomic<bool> &closing) {
  ::shutdown(fd, SHUT_WR);
  auto deadline = Clock::now() + seconds(timeout_s);
  char scratch[16384];
  size_t total = 0;
  while (!closing.load() && total < (1u << 20)) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, std::min(ms_until(deadline), 100));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (r == 0) {
      if (ms_until(deadline) == 0) break;
      continue;
    }
    ssize_t n = ::recv(fd, scratch, sizeof scratch, 0);
    if (n <= 0) break;
    total += size_t(n);
  }
}

void check_header_text(std::string_view s, bool name) {
  LMKIT_CHECK(!name || !s.empty(), "http: empty response header name");
  for (unsigned char c : s) {
    bool ok = name ? is_tchar(c) : is_value_char(c);
    LMKIT_CHECK(ok, "http: invalid character in response header ", name ? "name" : "value");
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Response

Response::Response(int fd, const Request &req, const std::atomic<bool> *stopping,
                   const std::atomic<bool> *closing)
    : fd_(fd),
      head_request_(req.method == "HEAD"),
      version_minor_(req.version_minor),
      keep_alive_(req.keep_alive),
      stopping_(stopping),
      closing_(closing) {}

std::string Response::head(int status, std::string_view content_type, const Headers &headers,
                           std::string_view framing) {
  LMKIT_CHECK(status >= 200 && status <= 999, "http: invalid response status ", status);
  check_header_text(content_type, false);
  for (const Header &h : headers) {
    check_header_text(h.name, true);
    check_header_text(h.value, false);
    for (std::string_view owned : {"content-length", "transfer-encoding", "connection"})
      LMKIT_CHECK(!iequals(h.name, owned), "http: the '", h.name,
                  "' response header is set by the HTTP layer");
  }
  if (stopping_ && stopping_->load()) keep_alive_ = false;
  std::string s = str_cat("HTTP/1.1 ", status, " ", reason_phrase(status), "\r\n");
  if (!content_type.empty()) s += str_cat("Content-Type: ", content_type, "\r\n");
  s += framing;
  s += keep_alive_ ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const Header &h : headers) s += str_cat(h.name, ": ", h.value, "\r\n");
  s += "\r\n";
  return s;
}

bool Response::send_all(std::string_view a, std::string_view b, std::string_view c) {
  if (broken_ || (closing_ && closing_->load())) {
    broken_ = true;
    return false;
  }
  // One buffer: a streamed piece leaves in one segment.
  std::string joined;
  std::string_view data = a;
  if (!b.empty() || !c.empty()) {
    joined.reserve(a.size() + b.size() + c.size());
    joined.append(a).append(b).append(c);
    data = joined;
  }
  if (!send_fully(fd_, data)) broken_ = true;
  return !broken_;
}

void Response::send(int status, std::string_view content_type, std::string_view body,
                    const Headers &headers) {
  LMKIT_CHECK(state_ == State::Idle, "http: response already started");
  bool no_body = status == 204 || status == 304;
  LMKIT_CHECK(!no_body || body.empty(), "http: a ", status, " response has no body");
  std::string h =
      head(status, content_type, headers,
           status == 204 ? std::string() : str_cat("Content-Length: ", body.size(), "\r\n"));
  state_ = State::Sent;
  send_all(h, head_request_ ? std::string_view() : body);
}

void Response::begin_stream(int status, std::string_view content_type, const Headers &headers) {
  LMKIT_CHECK(state_ == State::Idle, "http: response already started");
  chunked_ = version_minor_ == 1;
  if (!chunked_) keep_alive_ = false;  // HTTP/1.0: the body ends when the connection closes
  std::string h = head(status, content_type, headers,
                       chunked_ ? "Transfer-Encoding: chunked\r\n" : std::string_view());
  state_ = State::Streaming;
  send_all(h);
}

bool Response::write(std::string_view data) {
  LMKIT_CHECK(state_ == State::Streaming, "http: write() outside a stream (call begin_stream)");
  if (data.empty() || head_request_) return send_all({});
  if (!chunked_) return send_all(data);
  char size_line[24];
  int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
  return send_all(std::string_view(size_line, size_t(n)), data, "\r\n");
}

void Response::end() {
  LMKIT_CHECK(state_ == State::Streaming, "http: end() without begin_stream()");
  state_ = State::Ended;
  if (chunked_ && !head_request_) send_all("0\r\n\r\n");
}

bool Response::client_gone() {
  if (broken_ || (closing_ && closing_->load())) return true;
  pollfd p{fd_, POLLRDHUP, 0};
  int r = ::poll(&p, 1, 0);
  if (r > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) broken_ = true;
  return broken_;
}

// ---------------------------------------------------------------------------------------------
// Server

struct Server::Conn {
  std::mutex mu;
  int fd = -1;  // -1 once the connection thread closed it (guarded by mu)
  bool rejecting = false;
  std::atomic<bool> done{false};
  std::thread thread;
};

Server::Server(Options options, Handler handler)
    : opt_(std::move(options)), handler_(std::move(handler)) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
    fail("cannot create the server's wake-up pipe: ", std::strerror(errno));
  wake_r_ = fds[0];
  wake_w_ = fds[1];
  LMKIT_CHECK(opt_.max_connections >= 1, "max_connections must be at least 1");
  LMKIT_CHECK(opt_.port >= 0 && opt_.port <= 65535, "port must be in 0..65535, got ", opt_.port);
  LMKIT_CHECK(bool(handler_), "http::Server needs a handler");
}

Server::~Server() {
  // run() joins every connection; if it never ran, there are none.
  for (auto &c : conns_)
    if (c->thread.joinable()) c->thread.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  ::close(wake_r_);
  ::close(wake_w_);
}

void Server::request_stop() noexcept {
  stopping_.store(true);
  char b = 1;
  ssize_t r = ::write(wake_w_, &b, 1);  // full pipe (EAGAIN): already readable, which suffices
  (void)r;
}

void Server::start() {
  LMKIT_CHECK(listen_fd_ < 0, "http::Server::start() called twice");
  std::string where = opt_.host.find(':') != std::string::npos
                          ? str_cat("[", opt_.host, "]:", opt_.port)
                          : str_cat(opt_.host, ":", opt_.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo *res = nullptr;
  std::string port = std::to_string(opt_.port);
  int gai =
      ::getaddrinfo(opt_.host.empty() ? nullptr : opt_.host.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) fail("cannot bind ", where, ": ", ::gai_strerror(gai));
  int err = 0;
  for (addrinfo *ai = res; ai; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      listen_fd_ = fd;
      break;
    }
    err = errno;
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (listen_fd_ < 0) fail("cannot bind ", where, ": ", std::strerror(err));
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(listen_fd_, reinterpret_cast<sockaddr *>(&ss), &len) == 0)
    port_ = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port)
                                     : ntohs(reinterpret_cast<sockaddr_in *>(&ss)->sin_port);
}

void Server::reap_finished() {
  for (auto it = conns_.begin(); it != conns_.end();) {
    if ((*it)->done.load()) {
      (*it)->thread.join();
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

void Server::run() {
  LMKIT_CHECK(listen_fd_ >= 0, "http::Server::run() before start()");
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_r_, POLLIN, 0}};
    int r = ::poll(p, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents) break;
    if (!(p[0].revents & POLLIN)) continue;
    for (;;) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          pollfd w{wake_r_, POLLIN, 0};  // out of descriptors: back off instead of spinning
          ::poll(&w, 1, 100);
        }
        break;
      }
      reap_finished();
      int active = 0, rejecting = 0;
      for (auto &c : conns_) (c->rejecting ? rejecting : active)++;
      bool reject = active >= opt_.max_connections;
      if (reject && rejecting >= opt_.max_connections) {
        ::close(fd);  // flooded: not even a 503
        continue;
      }
      Conn *added = nullptr;
      try {
        conns_.push_back(std::make_unique<Conn>());
        added = conns_.back().get();
        added->fd = fd;
        added->rejecting = reject;
        Conn &ref = *added;
        ref.thread = std::thread([this, &ref] {
          try {
            if (ref.rejecting)
              reject_connection(ref);
            else
              serve_connection(ref);
          } catch (...) {  // out of memory in the layer itself: drop the connection
          }
          {
            std::lock_guard lk(ref.mu);
            if (ref.fd >= 0) ::close(ref.fd);
            ref.fd = -1;
          }
          {
            std::lock_guard lk(done_mu_);
            ref.done.store(true);
          }
          done_cv_.notify_all();
        });
      } catch (const std::exception &) {  // no thread (or no memory): drop this client
        if (added) conns_.pop_back();
        ::close(fd);
      }
    }
  }

  // Drain: no new connections; idle ones close themselves (they watch the wake-up pipe); requests
  // in flight get until the deadline, then their sockets are shut down under them.
  stopping_.store(true);
  ::close(listen_fd_);
  listen_fd_ = -1;
  auto deadline = Clock::now() + seconds(opt_.drain_timeout_s);
  {
    std::unique_lock lk(done_mu_);
    done_cv_.wait_until(lk, deadline, [&] {
      for (auto &c : conns_)
        if (!c->done.load()) return false;
      return true;
    });
  }
  closing_.store(true);
  for (auto &c : conns_) {
    std::lock_guard lk(c->mu);
    if (c->fd >= 0) ::shutdown(c->fd, SHUT_RDWR);
  }
  for (auto &c : conns_) c->thread.join();
  conns_.clear();
}

void Server::reject_connection(Conn &conn) {
  int fd = conn.fd;  // only this thread closes it
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string body = error_json(503, "the server is at its connection limit; retry shortly");
  std::string msg = str_cat(
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
      "Content-Length: ",
      body.size(), "\r\nConnection: close\r\nRetry-After: 1\r\n\r\n", body);
  send_fully(fd, msg);
  lingering_close(fd, 1.0, closing_);
}

void Server::serve_connection(Conn &conn) {
  int fd = conn.fd;  // only this thread closes it; run() may shut it down under conn.mu
  {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    double w = std::max(opt_.write_timeout_s, 0.001);
    timeval tv{time_t(w), suseconds_t((w - double(time_t(w))) * 1e6)};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  const Limits &limits = opt_.limits;
  const size_t max_buffer = limits.max_header_bytes + 2 * limits.max_body_bytes + (1u << 16);
  auto answer_error = [&](int status, std::string_view message) {
    std::string body = error_json(status, message);
    std::string msg = str_cat("HTTP/1.1 ", status, " ", reason_phrase(status),
                              "\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
                              "\r\nConnection: close\r\n\r\n", body);
    send_fully(fd, msg);
    lingering_close(fd, 1.0, closing_);
  };

  std::string buf;
  bool peer_eof = false;
  std::vector<char> chunk(1 << 16);
  auto idle_since = Clock::now();
  for (;;) {
    // Read until one request is complete (or fails).
    Request req;
    ParseResult pr;
    bool sent_continue = false;
    Clock::time_point request_start{};
    if (!buf.empty()) request_start = Clock::now();
    bool parse_due = !buf.empty();
    for (;;) {
      if (parse_due) {
        pr = parse_request(buf, limits, req);
        parse_due = false;
        if (pr.kind != ParseResult::Kind::NeedMore) break;
        if (pr.expect_continue && !sent_continue) {
          sent_continue = true;
          if (!send_fully(fd, "HTTP/1.1 100 Continue\r\n\r\n")) return;
        }
      }
      if (peer_eof) return;                         // the client stopped mid-request
      if (buf.empty() && stop_requested()) return;  // idle during a drain: just close
      bool idle = buf.empty();
      auto deadline = idle ? idle_since + seconds(opt_.idle_timeout_s)
                           : request_start + seconds(opt_.read_timeout_s);
      pollfd p[2] = {{fd, POLLIN, 0}, {wake_r_, POLLIN, 0}};
      int r = ::poll(p, idle ? 2 : 1, ms_until(deadline));
      if (r < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (closing_.load()) return;
      if (r == 0) {
        if (idle) return;  // a quiet keep-alive connection
        answer_error(408, str_cat("request not received within ", opt_.read_timeout_s, " s"));
        return;
      }
      if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;  // the wake-up pipe
      // Everything available now, then one parse.
      for (int flags = 0;; flags = MSG_DONTWAIT) {
        ssize_t n = ::recv(fd, chunk.data(), chunk.size(), flags);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && flags) break;
        if (n < 0) return;  // reset by the client
        if (n == 0) {       // half-closed: what it sent may still be a whole request
          peer_eof = true;
          break;
        }
        if (buf.empty()) request_start = Clock::now();
        buf.append(chunk.data(), size_t(n));
        if (buf.size() > max_buffer) break;
      }
      parse_due = true;
      if (buf.size() > max_buffer) {
        answer_error(413, "request too large");
        return;
      }
    }
    if (pr.kind == ParseResult::Kind::Error) {
      answer_error(pr.status, pr.message);
      return;
    }

    // Run the handler.
    Response resp(fd, req, &stopping_, &closing_);
    std::string failure;
    try {
      handler_(req, resp);
    } catch (const std::exception &e) {
      failure = e.what();
      if (failure.empty()) failure = "internal error";
    } catch (...) {
      failure = "internal error (unknown exception)";
    }
    if (!failure.empty() && resp.started()) return;  // mid-response: only closing tells the client
    if (!resp.started()) {
      if (failure.empty()) failure = str_cat("no response for ", req.method, " ", req.path);
      // Only the layer's own failure path: cannot throw (status and headers are valid).
      resp.send(500, "application/json", error_json(500, failure));
    } else if (resp.state_ == Response::State::Streaming) {
      resp.end();
    }
    if (resp.broken_ || closing_.load()) return;
    if (!resp.keep_alive_ || stop_requested()) {
      lingering_close(fd, 1.0, closing_);
      return;
    }
    buf.erase(0, pr.consumed);
    idle_since = Clock::now();
  }
}

}  // namespace lmkit::http
