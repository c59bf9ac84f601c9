// Tests for server/http: the request parser (whole, byte by byte, pipelined, chunked, every error
// status and limit) and the Server over real loopback sockets (fixed and streamed responses,
// keep-alive, 413, 503, 408, client disconnects, drain on stop). Not tests of the OpenAI routes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "core/error.h"
#include "http_test_client.h"
#include "server/http.h"

namespace lmkit::http {
namespace {

using Kind = ParseResult::Kind;
using namespace std::chrono_literals;

ParseResult parse(std::string_view s, Request &req, Limits limits = {}) {
  return parse_request(s, limits, req);
}

// The status of a request that must fail.
int error_status(std::string_view s, Limits limits = {}) {
  Request req;
  ParseResult r = parse(s, req, limits);
  EXPECT_EQ(r.kind, Kind::Error) << "input: " << s;
  EXPECT_FALSE(r.message.empty());
  EXPECT_EQ(r.message.find('\n'), std::string::npos);
  return r.status;
}

TEST(HttpParse, SimpleGet) {
  std::string s =
      "GET /v1/models?a=1&b=2 HTTP/1.1\r\nHost: localhost\r\nX-Thing:   padded value \t\r\n"
      "x-thing: second\r\nAccept:\r\n\r\n";
  Request req;
  ParseResult r = parse(s, req);
  ASSERT_EQ(r.kind, Kind::Complete) << r.message;
  EXPECT_EQ(r.consumed, s.size());
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.target, "/v1/models?a=1&b=2");
  EXPECT_EQ(req.path, "/v1/models");
  EXPECT_EQ(req.query, "a=1&b=2");
  EXPECT_EQ(req.version_minor, 1);
  ASSERT_EQ(req.headers.size(), 4u);
  EXPECT_EQ(req.headers[1].name, "x-thing");
  EXPECT_EQ(req.headers[1].value, "padded value");
  EXPECT_EQ(req.headers[2].value, "second");
  EXPECT_EQ(req.header("x-thing"), "padded value");
  EXPECT_EQ(req.header("accept", "none"), "");
  EXPECT_EQ(req.header("missing", "none"), "none");
  EXPECT_EQ(req.find_header("missing"), nullptr);
  EXPECT_TRUE(req.body.empty());
  EXPECT_TRUE(req.keep_alive);
}

TEST(HttpParse, AbsoluteFormLeadingCrlfAndNoHost) {
  Request req;
  ParseResult r = parse("\r\n\r\nOPTIONS http://example.com:80/x/y?q HTTP/1.1\r\n\r\n", req);
  ASSERT_EQ(r.kind, Kind::Complete) << r.message;
  EXPECT_EQ(req.method, "OPTIONS");
  EXPECT_EQ(req.path, "/x/y");
  EXPECT_EQ(req.query, "q");
  r = parse("OPTIONS * HTTP/1.1\r\n\r\n", req);
  ASSERT_EQ(r.kind, Kind::Complete);
  EXPECT_EQ(req.path, "*");
  r = parse("GET http://example.com HTTP/1.1\r\n\r\n", req);
  ASSERT_EQ(r.kind, Kind::Complete);
  EXPECT_EQ(req.path, "/");
}

TEST(HttpParse, ContentLengthBodyByteByByte) {
  std::string s = "POST /v1/completions HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world";
  Request req;
  for (size_t n = 0; n < s.size(); ++n) {
    ParseResult r = parse(std::string_view(s).substr(0, n), req);
    ASSERT_EQ(r.kind, Kind::NeedMore) << "prefix of " << n << " bytes: " << r.message;
  }
  ParseResult r = parse(s, req);
  ASSERT_EQ(r.kind, Kind::Complete);
  EXPECT_EQ(r.consumed, s.size());
  EXPECT_EQ(req.body, "hello world");
}

TEST(HttpParse, ChunkedBodyByteByByte) {
  std::string s =
      "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n1;name=value\r\n \r\nA \t; ext\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";
  Request req;
  for (size_t n = 0; n < s.size(); ++n) {
    ParseResult r = parse(std::string_view(s).substr(0, n), req);
    ASSERT_EQ(r.kind, Kind::NeedMore) << "prefix of " << n << " bytes: " << r.message;
  }
  ParseResult r = parse(s, req);
  ASSERT_EQ(r.kind, Kind::Complete) << r.message;
  EXPECT_EQ(r.consumed, s.size());
  EXPECT_EQ(req.body, "hello 0123456789");
}

TEST(HttpParse, PipelinedRequests) {
  std::string a = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
  std::string b = "GET /b HTTP/1.1\r\nConnection: close\r\n\r\n";
  std::string c = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n";
  std::string all = a + b + c + "GET /d";
  Request req;
  ParseResult r = parse(all, req);
  ASSERT_EQ(r.kind, Kind::Complete);
  EXPECT_EQ(r.consumed, a.size());
  EXPECT_EQ(req.path, "/a");
  EXPECT_EQ(req.body, "abc");
  std::string_view rest = std::string_view(all).substr(r.consumed);
  r = parse(rest, req);
  ASSERT_EQ(r.kind, Kind::Complete);
  EXPECT_EQ(r.consumed, b.size());
  EXPECT_EQ(req.path, "/b");
  EXPECT_FALSE(req.keep_alive);
  rest.remove_prefix(r.consumed);
  r = parse(rest, req);
  ASSERT_EQ(r.kind, Kind::Complete);
  EXPECT_EQ(r.consumed, c.size());
  EXPECT_EQ(req.body, "xy");
  rest.remove_prefix(r.consumed);
  EXPECT_EQ(parse(rest, req).kind, Kind::NeedMore);
}

TEST(HttpParse, KeepAliveSemantics) {
  Request req;
  ASSERT_EQ(parse("GET / HTTP/1.1\r\n\r\n", req).kind, Kind::Complete);
  EXPECT_TRUE(req.keep_alive);
  ASSERT_EQ(parse("GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n", req).kind,
            Kind::Complete);
  EXPECT_FALSE(req.keep_alive);
  ASSERT_EQ(parse("GET / HTTP/1.0\r\n\r\n", req).kind, Kind::Complete);
  EXPECT_EQ(req.version_minor, 0);
  EXPECT_FALSE(req.keep_alive);
  ASSERT_EQ(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", req).kind, Kind::Complete);
  EXPECT_TRUE(req.keep_alive);
  ASSERT_EQ(parse("POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: "
                  "chunked\r\n\r\n0\r\n\r\n",
                  req)
                .kind,
            Kind::Complete);
  EXPECT_FALSE(req.keep_alive);  // chunked in 1.0: close afterwards
}

TEST(HttpParse, RepeatedEqualContentLengthAccepted) {
  Request req;
  ParseResult r = parse("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", req);
  ASSERT_EQ(r.kind, Kind::Complete);
  EXPECT_EQ(req.body, "ok");
}

TEST(HttpParse, ExpectContinue) {
  Request req;
  ParseResult r =
      parse("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", req);
  EXPECT_EQ(r.kind, Kind::NeedMore);
  EXPECT_TRUE(r.expect_continue);
  r = parse("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n", req);
  EXPECT_EQ(r.kind, Kind::NeedMore);
  EXPECT_FALSE(r.expect_continue);  // fields not complete yet
}

TEST(HttpParse, MalformedRequestsGive400) {
  const char *cases[] = {
      "GET / HTTP/1.1\nHost: x\r\n\r\n",               // bare LF
      "GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n",          // bare CR in a value
      "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",  // obs-fold
      "GET / HTTP/1.1\r\nHo\x01st: x\r\n\r\n",         // control character in a name
      "GET / HTTP/1.1\r\nHost : x\r\n\r\n",            // space before the colon
      "GET / HTTP/1.1\r\n: x\r\n\r\n",                 // empty name
      "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
      "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",  // DEL in a value
      "GET /  HTTP/1.1\r\n\r\n",             // two spaces
      "GET / HTTP/1.1 \r\n\r\n",
      "GET /\r\n\r\n",                // HTTP/0.9 style
      "G(T / HTTP/1.1\r\n\r\n",       // invalid method character
      "GET /a\x80 HTTP/1.1\r\n\r\n",  // non-ASCII target
      "GET / http/1.1\r\n\r\n",
      "GET / HTTP/1.10\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  // not hex
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",    // empty size
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",  // no CRLF after data
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n",     // bare LF
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;\x01\r\nabc\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer: x\r\n\r\n",
  };
  for (const char *c : cases) EXPECT_EQ(error_status(c), 400) << "input: " << c;
}

TEST(HttpParse, ErrorStatuses) {
  EXPECT_EQ(error_status("GET / HTTP/2.0\r\n\r\n"), 505);
  EXPECT_EQ(error_status("GET / HTTP/1.2\r\n\r\n"), 505);
  EXPECT_EQ(error_status("GET / HTTP/0.9\r\n\r\n"), 505);
  EXPECT_EQ(error_status("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
  EXPECT_EQ(error_status("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"), 501);
  EXPECT_EQ(error_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                         "Transfer-Encoding: gzip\r\n\r\n"),
            501);
}

TEST(HttpParse, HeaderLimitGives431) {
  Limits limits;
  limits.max_header_bytes = 64;
  std::string big = "GET / HTTP/1.1\r\nX: " + std::string(100, 'a');
  EXPECT_EQ(error_status(big, limits), 431);               // incomplete, already too long
  EXPECT_EQ(error_status(big + "\r\n\r\n", limits), 431);  // complete but too long
  std::string fits = "GET / HTTP/1.1\r\nX: " + std::string(40, 'a') + "\r\n\r\n";
  ASSERT_LE(fits.size(), 64u);
  Request req;
  EXPECT_EQ(parse(fits, req, limits).kind, Kind::Complete);
  EXPECT_EQ(error_status(std::string(70, '\r') + "\n", limits), 400);  // bare CRs
  std::string crlfs;
  for (int i = 0; i < 40; ++i) crlfs += "\r\n";
  EXPECT_EQ(error_status(crlfs, limits), 431);
  EXPECT_EQ(error_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " +
                             std::string(100, 'b'),
                         limits),
            431);  // trailers count against the limit
  // The default limit is 16 KiB.
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\nX: " + std::string(17000, 'a') + "\r\n\r\n"), 431);
}

// Found by fuzz_http: a bare CR beyond the header limit gave 400 when the whole head had arrived
// but 431 when only a prefix had. Only the first max_header_bytes decide, so both are 431.
TEST(HttpParse, OutcomeDoesNotDependOnBytesBeyondTheLimit) {
  Limits limits;
  limits.max_header_bytes = 64;
  std::string head = "GET / HTTP/1.1\r\nX: " + std::string(100, 'a') + "\rb\r\n\r\n";
  for (size_t n : {size_t(65), size_t(100), head.size()})
    EXPECT_EQ(error_status(head.substr(0, n), limits), 431) << n << " bytes";
  std::string te =
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + std::string(100, 'b') +
      "\nc\r\n\r\n";
  EXPECT_EQ(error_status(te, limits), 431);  // the same for trailers
  EXPECT_EQ(error_status(te.substr(0, te.size() - 10), limits), 431);
}

TEST(HttpParse, BodyLimitGives413BeforeTheBody) {
  Limits limits;
  limits.max_body_bytes = 10;
  Request req;
  // No body bytes at all yet: the length alone decides.
  ParseResult r = parse("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", req, limits);
  ASSERT_EQ(r.kind, Kind::Error);
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.message.find("limit of 10 bytes"), std::string::npos) << r.message;
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", req, limits).kind,
            Kind::Complete);
  EXPECT_EQ(error_status("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            413);
  // Chunked: one chunk too big (announced), the sum too big, a size that would overflow 64 bits.
  std::string te = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(error_status(te + "b\r\n", limits), 413);
  EXPECT_EQ(error_status(te + "6\r\nabcdef\r\n6\r\n", limits), 413);
  EXPECT_EQ(error_status(te + "fffffffffffffffffffffffff\r\n"), 413);
  EXPECT_EQ(parse(te + "000000000000000000000000005\r\nabcde\r\n0\r\n\r\n", req, limits).kind,
            Kind::Complete);
  EXPECT_EQ(req.body, "abcde");
  limits.max_chunks = 2;
  EXPECT_EQ(error_status(te + "1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n", limits), 413);
  EXPECT_EQ(error_status(te + std::string(5000, '0')), 400);  // chunk size line too long
}

TEST(HttpParse, ErrorJsonFormat) {
  EXPECT_EQ(error_json(413, "too \"big\"\n"),
            "{\"error\":{\"message\":\"too \\\"big\\\"\\n\",\"type\":\"invalid_request_error\","
            "\"param\":null,\"code\":\"request_too_large\"}}");
  EXPECT_EQ(error_json(500, "boom"),
            "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"param\":null,"
            "\"code\":null}}");
  // Invalid UTF-8: one U+FFFD per maximal invalid subpart (\xff, then the truncated \xe2\x82).
  EXPECT_EQ(json_quote("a\x01\xc3\xa9\xff\xe2\x82"),
            "\"a\\u0001\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\"");
  EXPECT_STREQ(reason_phrase(404), "Not Found");
  EXPECT_STREQ(reason_phrase(431), "Request Header Fields Too Large");
}

// ---------------------------------------------------------------------------------------------
// Loopback

using test::ClientResponse;
using test::closed_by_server;
using test::connect_to;
using test::read_response;
using test::Running;
using test::send_str;

void echo(const Request &req, Response &res) {
  res.send(200, "text/plain", req.method + " " + req.path + " " + req.body,
           {{"X-Query", req.query}});
}

TEST(HttpServer, FixedResponseAndHead) {
  Running s({}, echo);
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  std::string buf;
  send_str(fd, "POST /echo?k=v HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  ClientResponse r = read_response(fd, buf);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "POST /echo hello");
  EXPECT_TRUE(r.has("Content-Type: text/plain")) << r.head;
  EXPECT_TRUE(r.has("Content-Length: 16")) << r.head;
  EXPECT_TRUE(r.has("Connection: keep-alive")) << r.head;
  EXPECT_TRUE(r.has("X-Query: k=v")) << r.head;
  // HEAD: the same fields, no body; the connection stays usable.
  send_str(fd, "HEAD /h HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\nConnection: close\r\n\r\n");
  std::string head_resp;
  while (head_resp.find("\r\n\r\n") == std::string::npos) {
    char tmp[256];
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    ASSERT_GT(n, 0);
    head_resp.append(tmp, size_t(n));
  }
  size_t end = head_resp.find("\r\n\r\n") + 4;
  EXPECT_NE(head_resp.find("Content-Length: 8\r\n"), std::string::npos) << head_resp;
  buf = head_resp.substr(end);
  r = read_response(fd, buf);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "GET /after ");
  EXPECT_TRUE(r.has("Connection: close"));
  EXPECT_TRUE(closed_by_server(fd));
  ::close(fd);
}

TEST(HttpServer, KeepAliveAndPipelining) {
  std::atomic<int> calls{0};
  Running s({}, [&](const Request &req, Response &res) {
    ++calls;
    echo(req, res);
  });
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  std::string buf;
  send_str(fd, "GET /one HTTP/1.1\r\n\r\n");
  ClientResponse r1 = read_response(fd, buf);
  send_str(fd, "GET /two HTTP/1.1\r\n\r\n");
  ClientResponse r2 = read_response(fd, buf);
  EXPECT_EQ(r1.body, "GET /one ");
  EXPECT_EQ(r2.body, "GET /two ");
  // Two at once, the second chunked.
  send_str(fd,
           "GET /three HTTP/1.1\r\n\r\nPOST /four HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3\r\nabc\r\n0\r\n\r\n");
  ClientResponse r3 = read_response(fd, buf);
  ClientResponse r4 = read_response(fd, buf);
  EXPECT_EQ(r3.body, "GET /three ");
  EXPECT_EQ(r4.body, "POST /four abc");
  EXPECT_EQ(calls.load(), 4);
  ::close(fd);
}

TEST(HttpServer, StreamedChunkedResponse) {
  Running s({}, [](const Request &, Response &res) {
    res.begin_stream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
    EXPECT_TRUE(res.write("data: one\n\n"));
    EXPECT_TRUE(res.write(""));  // nothing to send: not the terminating chunk
    EXPECT_TRUE(res.write("data: two\n\n"));
    EXPECT_FALSE(res.client_gone());
    res.end();
  });
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  std::string buf;
  send_str(fd, "GET /stream HTTP/1.1\r\n\r\n");
  ClientResponse r = read_response(fd, buf);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.chunked);
  EXPECT_TRUE(r.has("Cache-Control: no-cache"));
  EXPECT_TRUE(r.has("Content-Type: text/event-stream"));
  ASSERT_EQ(r.chunks.size(), 2u);
  EXPECT_EQ(r.chunks[0], "data: one\n\n");
  EXPECT_EQ(r.chunks[1], "data: two\n\n");
  // Still keep-alive after a stream.
  send_str(fd, "GET /again HTTP/1.1\r\n\r\n");
  EXPECT_EQ(read_response(fd, buf).body, "data: one\n\ndata: two\n\n");
  ::close(fd);
}

TEST(HttpServer, Http10StreamEndsWithClose) {
  Running s({}, [](const Request &, Response &res) {
    res.begin_stream(200, "text/plain");
    res.write("a");
    res.write("b");
  });  // no end(): the layer finishes
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  std::string buf;
  send_str(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  ClientResponse r = read_response(fd, buf);
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.chunked);
  EXPECT_TRUE(r.has("Connection: close"));
  EXPECT_EQ(r.body, "ab");
  ::close(fd);
}

TEST(HttpServer, HandlerFailuresGive500Json) {
  Running s({}, [](const Request &req, Response &res) {
    if (req.path == "/throw") throw Error("model exploded");
    if (req.path == "/misuse") res.send(200, "text/plain", "x", {{"Content-Length", "3"}});
    if (req.path == "/inject") res.send(200, "text/plain", "x", {{"X-A", "1\r\nX-B: 2"}});
    if (req.path == "/nocontent") res.send(204, "", "");
    // "/silent": returns without a response
  });
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  std::string buf;
  send_str(fd, "GET /throw HTTP/1.1\r\n\r\n");
  ClientResponse r = read_response(fd, buf);
  EXPECT_EQ(r.status, 500);
  EXPECT_TRUE(r.has("Content-Type: application/json"));
  EXPECT_EQ(r.body, error_json(500, "model exploded"));
  send_str(fd, "GET /silent HTTP/1.1\r\n\r\n");
  r = read_response(fd, buf);
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, error_json(500, "no response for GET /silent"));
  send_str(fd, "GET /misuse HTTP/1.1\r\n\r\n");
  r = read_response(fd, buf);
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("set by the HTTP layer"), std::string::npos) << r.body;
  send_str(fd, "GET /inject HTTP/1.1\r\n\r\n");
  r = read_response(fd, buf);
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.head.find("X-B"), std::string::npos);
  EXPECT_EQ(r.body, error_json(500, "http: invalid character in response header value"));
  send_str(fd, "GET /nocontent HTTP/1.1\r\n\r\n");
  r = read_response(fd, buf);
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.head.find("Content-Length"), std::string::npos) << r.head;
  EXPECT_EQ(r.head.find("Content-Type"), std::string::npos) << r.head;
  ::close(fd);
}

TEST(HttpServer, OversizedBodyGets413AndClose) {
  Server::Options opt;
  opt.limits.max_body_bytes = 1000;
  std::atomic<int> calls{0};
  Running s(opt, [&](const Request &req, Response &res) {
    ++calls;
    echo(req, res);
  });
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  std::string buf;
  send_str(fd, "POST /big HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n");  // body never sent
  ClientResponse r = read_response(fd, buf);
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(r.has("Connection: close"));
  EXPECT_EQ(r.body,
            error_json(413, "request body of 1000000 bytes exceeds the limit of 1000 bytes"));
  EXPECT_NE(r.body.find("\"code\":\"request_too_large\""), std::string::npos);
  EXPECT_TRUE(closed_by_server(fd));
  EXPECT_EQ(calls.load(), 0);
  ::close(fd);
}

TEST(HttpServer, BadRequestGets400) {
  Running s({}, echo);
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  std::string buf;
  send_str(fd, "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n");
  ClientResponse r = read_response(fd, buf);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, error_json(400, "invalid character in a header field name"));
  EXPECT_TRUE(closed_by_server(fd));
  ::close(fd);
}

TEST(HttpServer, ExpectContinue) {
  Running s({}, echo);
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  std::string buf;
  send_str(fd, "POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
  ClientResponse interim = read_response(fd, buf);
  EXPECT_EQ(interim.status, 100);
  send_str(fd, "data");
  ClientResponse r = read_response(fd, buf);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "POST /up data");
  ::close(fd);
}

TEST(HttpServer, MaxConnectionsGives503) {
  Server::Options opt;
  opt.max_connections = 1;
  Running s(opt, echo);
  int a = connect_to(s.server.port());
  ASSERT_GE(a, 0);
  std::string buf;
  send_str(a, "GET /a HTTP/1.1\r\n\r\n");
  ASSERT_EQ(read_response(a, buf).status, 200);  // a is served and held open (keep-alive)
  int b = connect_to(s.server.port());
  ASSERT_GE(b, 0);
  std::string bbuf;
  send_str(b, "GET /b HTTP/1.1\r\n\r\n");
  ClientResponse r = read_response(b, bbuf);
  EXPECT_EQ(r.status, 503);
  EXPECT_TRUE(r.has("Retry-After: 1")) << r.head;
  EXPECT_TRUE(r.has("Connection: close"));
  EXPECT_EQ(r.body, error_json(503, "the server is at its connection limit; retry shortly"));
  EXPECT_TRUE(closed_by_server(b));
  ::close(b);
  // a still works; once it is closed a new client is served.
  send_str(a, "GET /a2 HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(read_response(a, buf).body, "GET /a2 ");
  EXPECT_TRUE(closed_by_server(a));
  ::close(a);
  ClientResponse rc;
  for (int attempt = 0; attempt < 100; ++attempt) {  // the server notices a's end asynchronously
    int c = connect_to(s.server.port());
    ASSERT_GE(c, 0);
    std::string cbuf;
    send_str(c, "GET /c HTTP/1.1\r\n\r\n");
    rc = read_response(c, cbuf);
    ::close(c);
    if (rc.status == 200) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(rc.status, 200);
  EXPECT_EQ(rc.body, "GET /c ");
}

TEST(HttpServer, SlowClientGets408) {
  Server::Options opt;
  opt.read_timeout_s = 0.2;
  Running s(opt, echo);
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  auto t0 = std::chrono::steady_clock::now();
  send_str(fd, "GET /slow HTTP/1.1\r\nHost: x\r\n");  // never finished
  std::string buf;
  ClientResponse r = read_response(fd, buf);
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.status, 408);
  EXPECT_TRUE(r.has("Connection: close"));
  EXPECT_GE(waited, 0.15);
  EXPECT_LT(waited, 2.0);
  EXPECT_TRUE(closed_by_server(fd));
  ::close(fd);
}

TEST(HttpServer, IdleKeepAliveConnectionIsClosed) {
  Server::Options opt;
  opt.idle_timeout_s = 0.1;
  Running s(opt, echo);
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  std::string buf;
  send_str(fd, "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(read_response(fd, buf).status, 200);
  EXPECT_TRUE(closed_by_server(fd));  // quietly, no 408
  EXPECT_TRUE(buf.empty());
  ::close(fd);
}

TEST(HttpServer, ClientDisconnectMidStream) {
  std::promise<void> first_sent;
  std::promise<std::pair<bool, bool>> outcome;  // (client_gone seen, write returned false)
  Running s({}, [&](const Request &, Response &res) {
    res.begin_stream(200, "text/event-stream");
    res.write("data: first\n\n");
    first_sent.set_value();
    auto deadline = std::chrono::steady_clock::now() + 3s;
    bool gone = false;
    while (!gone && std::chrono::steady_clock::now() < deadline) {
      gone = res.client_gone();
      if (!gone) std::this_thread::sleep_for(2ms);
    }
    bool write_failed = false;
    while (!write_failed && std::chrono::steady_clock::now() < deadline) {
      write_failed = !res.write("data: more\n\n");
      if (!write_failed) std::this_thread::sleep_for(2ms);
    }
    outcome.set_value({gone, write_failed});
    EXPECT_FALSE(res.write("x"));  // stays false
  });
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  send_str(fd, "GET /stream HTTP/1.1\r\n\r\n");
  first_sent.get_future().wait();
  ::close(fd);
  auto f = outcome.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  auto [gone, write_failed] = f.get();
  EXPECT_TRUE(gone);
  EXPECT_TRUE(write_failed);
}

TEST(HttpServer, StopDrainsInFlightRequest) {
  std::promise<void> started;
  Running s({}, [&](const Request &, Response &res) {
    started.set_value();
    std::this_thread::sleep_for(300ms);
    res.send(200, "text/plain", "finished");
  });
  int idle = connect_to(s.server.port());  // an idle keep-alive connection: closed by the stop
  ASSERT_GE(idle, 0);
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  send_str(fd, "GET /slow HTTP/1.1\r\n\r\n");
  started.get_future().wait();
  auto t0 = std::chrono::steady_clock::now();
  s.server.stop();
  std::string buf;
  ClientResponse r = read_response(fd, buf);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "finished");
  EXPECT_TRUE(r.has("Connection: close"));
  EXPECT_TRUE(closed_by_server(fd));
  EXPECT_TRUE(closed_by_server(idle));
  ::close(fd);  // (else the server lingers up to 1 s for the client to close first)
  ::close(idle);
  s.thread.join();  // run() returned
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 2.0);
  int late = connect_to(s.server.port());
  EXPECT_EQ(late, -1);  // no longer listening
  if (late >= 0) ::close(late);
}

TEST(HttpServer, DrainDeadlineCutsEndlessStream) {
  Server::Options opt;
  opt.drain_timeout_s = 0.2;
  std::promise<void> started;
  std::atomic<bool> saw_gone{false};
  Running s(opt, [&](const Request &, Response &res) {
    res.begin_stream(200, "text/event-stream");
    started.set_value();
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline && !res.client_gone()) {
      res.write("data: tick\n\n");
      std::this_thread::sleep_for(5ms);
    }
    saw_gone = res.client_gone();
    EXPECT_FALSE(res.write("late"));
  });
  int fd = connect_to(s.server.port());
  ASSERT_GE(fd, 0);
  send_str(fd, "GET /forever HTTP/1.1\r\n\r\n");
  started.get_future().wait();
  auto t0 = std::chrono::steady_clock::now();
  s.server.request_stop();
  s.thread.join();
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(took, 0.15);
  EXPECT_LT(took, 2.0);
  EXPECT_TRUE(saw_gone.load());
  ::close(fd);
}

TEST(HttpServer, BindErrorIsOneLine) {
  Running s({}, echo);
  Server::Options opt;
  opt.port = s.server.port();
  Server second(opt, echo);
  try {
    second.start();
    FAIL() << "bound a port in use";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              str_cat("cannot bind 127.0.0.1:", opt.port, ": Address already in use"));
  }
  Server::Options bad;
  bad.host = "no.such.host.invalid";
  Server third(bad, echo);
  EXPECT_THROW(third.start(), Error);
  EXPECT_THROW(Server(Server::Options{}, Handler{}), Error);
}

TEST(HttpServer, StopBeforeRunReturnsAtOnce) {
  Server::Options opt;
  opt.port = 0;
  Server srv(opt, echo);
  srv.start();
  EXPECT_GT(srv.port(), 0);
  srv.request_stop();
  srv.run();  // returns: the stop was already requested
  Server not_started(opt, echo);
  EXPECT_THROW(not_started.run(), Error);
}

}  // namespace
}  // namespace lmkit::http
