// serve_load: a load generator for OpenAI-compatible servers (lmkit serve, llama.cpp's
// llama-server): N concurrent clients each stream completions (one SSE chunk per token) until a
// request count or a duration is reached. Reports aggregate decode tok/s, time to first token
// (p50/p99), errors, and the server's resident memory over time when given its pid. Loopback
// plain HTTP only; not a general HTTP client. Requests sample as llama.cpp does by default (top-k
// 40, top-p 0.95, min-p 0.05; temperature 0.8 unless --temperature), so both servers do the same
// sampling work.
//
//   serve_load --port 8080 --clients 16 --requests 4 --max-tokens 128 [--duration 60]
//              [--temperature 0.8] [--prompt TEXT] [--pid PID] [--json]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int port = 8080;
  int clients = 1;
  int requests = 1;     // per client (ignored when duration > 0)
  double duration = 0;  // seconds: keep issuing requests until then
  int max_tokens = 128;
  double temperature = 0.8;
  std::string prompt = "Once upon a time";
  int pid = 0;
  bool json = false;
  double timeout = 120;  // per request
};

struct Result {
  bool ok = false;
  std::string error;
  double ttft = 0, total = 0;
  int tokens = 0;
};

std::string json_escape(const std::string &s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}

// One streamed completion. Counts SSE data chunks that carry text (one per token).
Result one_request(const Options &o) {
  Result r;
  const auto t0 = Clock::now();
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(o.port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{long(o.timeout), 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
    r.error = std::string("connect: ") + std::strerror(errno);
    ::close(fd);
    return r;
  }
  const std::string body = "{\"prompt\": \"" + json_escape(o.prompt) +
                           "\", \"max_tokens\": " + std::to_string(o.max_tokens) +
                           ", \"temperature\": " + std::to_string(o.temperature) +
                           ", \"top_k\": 40, \"top_p\": 0.95, \"min_p\": 0.05"
                           ", \"ignore_eos\": true, \"stream\": true}";
  const std::string req =
      "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != ssize_t(req.size())) {
    r.error = "send failed";
    ::close(fd);
    return r;
  }
  std::string buf;
  size_t scanned = 0;
  bool head_done = false, done = false;
  char tmp[16384];
  for (;;) {
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) break;
    buf.append(tmp, size_t(n));
    if (!head_done) {
      size_t e = buf.find("\r\n\r\n");
      if (e == std::string::npos) continue;
      head_done = true;
      const int status = std::atoi(buf.c_str() + 9);
      if (status != 200) {
        r.error = "HTTP " + std::to_string(status);
        break;
      }
      scanned = e + 4;
    }
    // Chunked framing lines are skipped: look for SSE events by their "data: " prefix.
    size_t at;
    while ((at = buf.find("data: ", scanned)) != std::string::npos) {
      size_t end = buf.find("\n\n", at);
      if (end == std::string::npos) break;
      std::string ev = buf.substr(at + 6, end - at - 6);
      scanned = end + 2;
      if (ev == "[DONE]") {
        done = true;
        continue;
      }
      // A token chunk has a non-empty "text" (or "content").
      size_t t = ev.find("\"text\":\"");
      if (t == std::string::npos) t = ev.find("\"content\":\"");
      if (t != std::string::npos && ev[ev.find(':', t) + 2] != '"') {
        if (r.tokens++ == 0) r.ttft = std::chrono::duration<double>(Clock::now() - t0).count();
      }
    }
  }
  ::close(fd);
  r.total = std::chrono::duration<double>(Clock::now() - t0).count();
  if (r.error.empty() && !done) r.error = "stream ended without [DONE]";
  r.ok = r.error.empty();
  return r;
}

double rss_mb(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i =
      size_t(std::min<double>(double(v.size() - 1), std::ceil(p / 100.0 * double(v.size())) - 1));
  return v[i];
}

int usage() {
  std::fprintf(stderr,
               "usage: serve_load [--port P] [--clients N] [--requests R | --duration S] "
               "[--max-tokens T] [--temperature X] [--prompt TEXT] [--pid PID] [--json]\n");
  return 2;
}

}  // namespace

int main(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char * {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "serve_load: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--port")
      o.port = std::atoi(next());
    else if (a == "--clients")
      o.clients = std::atoi(next());
    else if (a == "--requests")
      o.requests = std::atoi(next());
    else if (a == "--duration")
      o.duration = std::atof(next());
    else if (a == "--max-tokens")
      o.max_tokens = std::atoi(next());
    else if (a == "--prompt")
      o.prompt = next();
    else if (a == "--temperature")
      o.temperature = std::atof(next());
    else if (a == "--pid")
      o.pid = std::atoi(next());
    else if (a == "--json")
      o.json = true;
    else if (a == "--help" || a == "-h")
      return usage() - 2;
    else
      return usage();
  }
  if (o.clients < 1 || o.requests < 1 || o.max_tokens < 1 || o.port <= 0) return usage();

  std::mutex mu;
  std::vector<Result> results;
  std::vector<std::pair<double, double>> rss;  // (seconds, MB)
  std::atomic<bool> finished{false};
  const auto t0 = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  std::thread sampler;
  if (o.pid > 0)
    sampler = std::thread([&] {
      while (!finished) {
        double m = rss_mb(o.pid);
        {
          std::lock_guard lk(mu);
          rss.emplace_back(elapsed(), m);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    });
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c)
    threads.emplace_back([&] {
      for (int k = 0; o.duration > 0 ? elapsed() < o.duration : k < o.requests; ++k) {
        Result r = one_request(o);
        std::lock_guard lk(mu);
        results.push_back(r);
      }
    });
  for (auto &t : threads) t.join();
  const double wall = elapsed();
  finished = true;
  if (sampler.joinable()) sampler.join();

  int ok = 0, errors = 0;
  long tokens = 0;
  std::vector<double> ttft, stream_rate;
  std::string first_error;
  for (const Result &r : results) {
    if (!r.ok) {
      ++errors;
      if (first_error.empty()) first_error = r.error;
      continue;
    }
    ++ok;
    tokens += r.tokens;
    ttft.push_back(r.ttft);
    if (r.total > r.ttft && r.tokens > 1)
      stream_rate.push_back((r.tokens - 1) / (r.total - r.ttft));
  }
  // Memory after warm-up: the first sample past 20% of the run vs the last.
  double rss_warm = 0, rss_end = 0, rss_max = 0;
  for (const auto &[t, m] : rss) {
    if (rss_warm == 0 && t >= 0.2 * wall) rss_warm = m;
    rss_end = m;
    rss_max = std::max(rss_max, m);
  }
  const double agg = double(tokens) / wall;
  double mean_stream = 0;
  for (double v : stream_rate) mean_stream += v / double(stream_rate.size());
  if (o.json) {
    std::printf(
        "{\"clients\": %d, \"requests\": %d, \"errors\": %d, \"tokens\": %ld, \"wall_s\": %.3f, "
        "\"aggregate_tok_s\": %.2f, \"stream_tok_s\": %.2f, \"ttft_p50_ms\": %.2f, "
        "\"ttft_p99_ms\": %.2f, \"rss_warm_mb\": %.1f, \"rss_end_mb\": %.1f, \"rss_max_mb\": %.1f, "
        "\"first_error\": \"%s\"}\n",
        o.clients, ok + errors, errors, tokens, wall, agg, mean_stream, 1e3 * pct(ttft, 50),
        1e3 * pct(ttft, 99), rss_warm, rss_end, rss_max, json_escape(first_error).c_str());
  } else {
    std::printf("clients %d: %d requests, %d errors, %ld tokens in %.2f s\n", o.clients,
                ok + errors, errors, tokens, wall);
    std::printf("  aggregate %.1f tok/s, per stream %.1f tok/s, TTFT p50 %.1f ms p99 %.1f ms\n",
                agg, mean_stream, 1e3 * pct(ttft, 50), 1e3 * pct(ttft, 99));
    if (o.pid > 0)
      std::printf("  server RSS: %.1f MB after warm-up, %.1f MB at the end, %.1f MB max\n",
                  rss_warm, rss_end, rss_max);
    if (errors) std::printf("  first error: %s\n", first_error.c_str());
  }
  return errors ? 1 : 0;
}
