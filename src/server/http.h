// lmkit::http: the HTTP/1.1 layer under `lmkit serve`: a pure, fuzzable request parser
// (parse_request) and a small blocking server (Server) with one thread per connection, keep-alive,
// chunked request and response bodies, limits, timeouts and a graceful drain on stop.
// Not a router, not TLS, not HTTP/2, and no knowledge of OpenAI or JSON beyond the error bodies
// it writes itself: the handler (server/openai.*) decides what every request means.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace lmkit::http {

struct Header {
  std::string name;  // lower-cased by the parser
  std::string value;
};
using Headers = std::vector<Header>;

struct Request {
  std::string method;     // as sent, case-sensitive ("GET", "POST")
  std::string target;     // the request-target as sent ("/v1/models?x=1")
  std::string path;       // target without the query ("/v1/models"); absolute-form is reduced to it
  std::string query;      // after '?', without it; empty when none
  int version_minor = 1;  // HTTP/1.<version_minor>: 0 or 1
  Headers headers;        // in order; repeated fields are kept
  std::string body;       // Content-Length bytes, or the decoded chunked body
  bool keep_alive = true;  // whether the connection may carry another request after this one

  // The first field with this name (give it lower-case), or nullptr.
  const std::string *find_header(std::string_view lower_name) const;
  // Its value, or `fallback` when absent.
  std::string_view header(std::string_view lower_name, std::string_view fallback = {}) const;
};

struct Limits {
  size_t max_header_bytes = 16 * 1024;      // request line + fields (+ chunked trailers): else 431
  size_t max_body_bytes = 8 * 1024 * 1024;  // decoded body: else 413, before reading it
  size_t max_chunks = 65536;                // chunks in one chunked body: else 413
};

struct ParseResult {
  enum class Kind { Complete, NeedMore, Error };
  Kind kind = Kind::NeedMore;
  size_t consumed = 0;  // Complete: bytes of `buf` the request took (the next one starts there)
  int status = 0;       // Error: the status to answer with (400, 413, 431, 501, 505)
  std::string message;  // Error: one line, for the client
  bool expect_continue = false;  // NeedMore: the fields are complete and ask for 100-continue
};

// Parses one request from the start of `buf`. NeedMore: `buf` is a valid prefix (call again with
// more bytes appended). Error: the connection cannot be trusted to resynchronise (close it after
// answering). Lines end with CRLF; bare CR or LF, obs-fold, control characters, both
// Content-Length and Transfer-Encoding, and transfer codings other than a single `chunked` are
// rejected. `out` is overwritten; it is meaningful only for Complete.
ParseResult parse_request(std::string_view buf, const Limits &limits, Request &out);

// "OK", "Not Found", ... ("Unknown" for codes it does not know).
const char *reason_phrase(int status);

// The OpenAI-style error body every error the HTTP layer writes uses:
// {"error":{"message":...,"type":...,"param":null,"code":...}}; type is "invalid_request_error" for
// 4xx and "server_error" otherwise; code is "request_too_large" for 413, else null.
std::string error_json(int status, std::string_view message);
// `s` as a JSON string literal, quotes included (invalid UTF-8 becomes U+FFFD).
std::string json_quote(std::string_view s);

class Server;

// One response, written by the handler: either send() once, or begin_stream(), write()*, end().
// Misuse (send twice, write before begin_stream, a header that the layer owns such as
// Content-Length, CR/LF in a header) throws lmkit::Error; the handler's exception then becomes a
// 500 when nothing was sent yet.
class Response {
 public:
  Response(const Response &) = delete;
  Response &operator=(const Response &) = delete;

  void send(int status, std::string_view content_type, std::string_view body,
            const Headers &headers = {});
  // Streams the body: chunked for HTTP/1.1, until close for HTTP/1.0.
  void begin_stream(int status, std::string_view content_type, const Headers &headers = {});
  // Sends one piece at once (TCP_NODELAY). False once the client is gone (write error, write
  // timeout, or the server's drain deadline passed); it stays false.
  bool write(std::string_view data);
  // Finishes a stream (the terminating chunk). Called for the handler if it forgets.
  void end();
  // True when the peer has closed or reset the connection, without writing: for a handler that
  // waits (on tokens) to notice a client that left. Also true once a write failed or the server's
  // drain deadline passed.
  bool client_gone();
  // Whether the status line has been written.
  bool started() const { return state_ != State::Idle; }

 private:
  friend class Server;
  enum class State { Idle, Sent, Streaming, Ended };
  Response(int fd, const Request &req, const std::atomic<bool> *stopping,
           const std::atomic<bool> *closing);
  std::string head(int status, std::string_view content_type, const Headers &headers,
                   std::string_view framing);
  bool send_all(std::string_view a, std::string_view b = {}, std::string_view c = {});

  int fd_;
  bool head_request_;
  int version_minor_;
  bool keep_alive_;
  bool chunked_ = false;
  bool broken_ = false;
  State state_ = State::Idle;
  const std::atomic<bool> *stopping_;
  const std::atomic<bool> *closing_;
};

using Handler = std::function<void(const Request &, Response &)>;

class Server {
 public:
  struct Options {
    std::string host = "127.0.0.1";  // a numeric address or a name; "0.0.0.0" / "::" for all
    int port = 8080;                 // 0: an ephemeral port (see port())
    int max_connections = 64;        // beyond it: 503 with Retry-After, then close
    Limits limits;
    double read_timeout_s = 30;   // a started request must be complete within this: else 408
    double idle_timeout_s = 60;   // a keep-alive connection with no new request is closed
    double write_timeout_s = 60;  // a client that reads nothing for this long is gone
    double drain_timeout_s = 10;  // after stop: in-flight requests get this long to finish
  };

  Server(Options options, Handler handler);
  ~Server();
  Server(const Server &) = delete;
  Server &operator=(const Server &) = delete;

  // Binds and listens; throws lmkit::Error ("cannot bind 127.0.0.1:8080: Address already in use").
  void start();
  // The bound port (after start()).
  int port() const { return port_; }
  // Serves until a stop is requested, drains (see Options::drain_timeout_s), joins every
  // connection thread and returns. Call once, after start().
  void run();
  // Requests the stop and returns at once; run() returns when drained. Callable from any thread,
  // including a handler.
  void stop() { request_stop(); }
  // The same, async-signal-safe (an atomic store and a write to a pipe): for a SIGTERM handler.
  void request_stop() noexcept;

 private:
  struct Conn;
  void serve_connection(Conn &conn);
  void reject_connection(Conn &conn);
  void reap_finished();
  bool stop_requested() const { return stopping_.load(); }

  Options opt_;
  Handler handler_;
  int listen_fd_ = -1;
  int wake_r_ = -1, wake_w_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> closing_{false};
  std::list<std::unique_ptr<Conn>> conns_;  // owned by run()'s thread
  std::mutex done_mu_;
  std::condition_variable done_cv_;
};

}  // namespace lmkit::http
