// libFuzzer target for the HTTP request parser (server/http.h, parse_request): any bytes give
// Complete, NeedMore or an Error with a known status, never a crash, a sanitizer report or a throw;
// and a prefix of the input never disagrees with the whole (a prefix of a complete request needs
// more bytes; a prefix that completes or fails does so identically with the rest appended). Not a
// test of the server's sockets: tests/server does that.
//
//   fuzz_http CORPUS_DIR [SEED_DIR] -runs=1000000   fuzz (FUZZ_TARGET=http scripts/fuzz.sh)
//   fuzz_http --make-corpus DIR                     write the seed corpus (small valid requests)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "server/http.h"

namespace {

using namespace lmkit::http;
using Kind = ParseResult::Kind;

[[noreturn]] void invariant_broken(const char *what) {
  std::fprintf(stderr, "fuzz_http: invariant broken: %s\n", what);
  std::abort();
}

bool same_request(const Request &a, const Request &b) {
  if (a.method != b.method || a.target != b.target || a.path != b.path || a.query != b.query ||
      a.version_minor != b.version_minor || a.body != b.body || a.keep_alive != b.keep_alive ||
      a.headers.size() != b.headers.size())
    return false;
  for (size_t i = 0; i < a.headers.size(); ++i)
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value)
      return false;
  return true;
}

void check_result(const ParseResult &r, const Request &req, std::string_view buf,
                  const Limits &limits) {
  switch (r.kind) {
    case Kind::Complete:
      if (r.consumed == 0 || r.consumed > buf.size()) invariant_broken("consumed out of range");
      if (req.method.empty() || req.path.empty()) invariant_broken("empty method or path");
      if (req.version_minor != 0 && req.version_minor != 1) invariant_broken("bad version");
      if (req.body.size() > limits.max_body_bytes) invariant_broken("body over the limit");
      if (req.body.size() > r.consumed) invariant_broken("body longer than the input");
      for (const Header &h : req.headers) {
        if (h.name.empty()) invariant_broken("empty header name");
        for (char c : h.name)
          if ((c >= 'A' && c <= 'Z') || c == ':' || c == ' ' || c == '\r' || c == '\n')
            invariant_broken("header name not lower-cased or not a token");
        for (char c : h.value)
          if (c == '\r' || c == '\n' || c == '\0') invariant_broken("CR, LF or NUL in a value");
        if (!h.value.empty() && (h.value.front() == ' ' || h.value.back() == ' '))
          invariant_broken("header value not trimmed");
      }
      break;
    case Kind::Error:
      if (r.status != 400 && r.status != 413 && r.status != 431 && r.status != 501 &&
          r.status != 505)
        invariant_broken("unexpected error status");
      if (r.message.empty() || r.message.find('\n') != std::string::npos)
        invariant_broken("error message empty or not one line");
      break;
    case Kind::NeedMore:
      break;
  }
}

// The whole input, then a prefix of it: the prefix must agree with the whole.
void exercise(std::string_view buf, size_t split, const Limits &limits) {
  Request whole, part;
  ParseResult w = parse_request(buf, limits, whole);
  check_result(w, whole, buf, limits);
  std::string_view prefix = buf.substr(0, split);
  ParseResult p = parse_request(prefix, limits, part);
  check_result(p, part, prefix, limits);
  switch (p.kind) {
    case Kind::NeedMore:
      if (w.kind == Kind::Complete && w.consumed <= split)
        invariant_broken("a prefix holding a whole request needs more");
      break;
    case Kind::Complete:
      if (w.kind != Kind::Complete || w.consumed != p.consumed || !same_request(whole, part))
        invariant_broken("a complete prefix parses differently with more bytes");
      break;
    case Kind::Error:
      if (w.kind != Kind::Error || w.status != p.status)
        invariant_broken("a failing prefix does not fail the same way with more bytes");
      break;
  }
  // Pipelining: what follows a complete request parses on its own.
  if (w.kind == Kind::Complete && w.consumed < buf.size()) {
    Request next;
    ParseResult n = parse_request(buf.substr(w.consumed), limits, next);
    check_result(n, next, buf.substr(w.consumed), limits);
  }
}

void make_corpus(const std::string &dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  const char *seeds[] = {
      "GET /v1/models HTTP/1.1\r\nHost: localhost:8080\r\nAccept: */*\r\n\r\n",
      "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
      "Content-Length: 27\r\n\r\n{\"model\":\"m\",\"stream\":true}",
      "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nTrailer: x\r\n\r\n",
      "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
      "OPTIONS * HTTP/1.1\r\nOrigin: http://x\r\nAccess-Control-Request-Method: POST\r\n\r\n",
      "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
      "GET /next HTTP/1.1\r\nConnection: close\r\n\r\n",
      "HEAD http://example.com/a?b HTTP/1.1\r\n\r\n",
  };
  int i = 0;
  for (const char *s : seeds) {
    std::ofstream out(fs::path(dir) / ("seed" + std::to_string(i++) + ".http"), std::ios::binary);
    out << s;
  }
  std::printf("fuzz_http: seed corpus written to %s\n", dir.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *argc, char ***argv) {
  for (int k = 1; k + 1 < *argc; ++k)
    if (std::strcmp((*argv)[k], "--make-corpus") == 0) {
      make_corpus((*argv)[k + 1]);
      std::exit(0);
    }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view buf(reinterpret_cast<const char *>(data), size);
  // Defaults, and small limits so that 413 and 431 are within the fuzzer's reach.
  Limits small;
  small.max_header_bytes = 256;
  small.max_body_bytes = 64;
  small.max_chunks = 4;
  size_t split = size == 0 ? 0 : (size_t(data[0]) | size_t(data[size - 1]) << 8) % (size + 1);
  exercise(buf, split, Limits{});
  exercise(buf, size / 2, small);
  return 0;
}
