// caseway-bench-query: remote queries and case timelines against running nodes (issue #9).
//
//   latency  as an office of A: Gateway.QueryPeer to B for random cases (A's node asks B's:
//            PeerExchange.Query, signed, logged on both sides), Gateway.Case at A, and the
//            timeline with the peer's view (Case, then QueryPeer); percentiles of each.
//   flood    as node A (its node certificate), PeerExchange.Query to B from FLOOD_THREADS threads
//            as fast as B answers, while node C asks at OTHER_RATE per second: how many of A's B
//            answered (its limit) and whether C's were all answered, with C's latency.
// Every loop is bounded by a count and a time limit.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/fanout.h"
#include "caseway/v1/gateway.grpc.pb.h"
#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/grpc_status.h"
#include "common/refusal.h"
#include "common/tls.h"

namespace {

constexpr char kPurpose[] = "caseway benchmark";

namespace v1 = caseway::v1;
using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point from) {
  return std::chrono::duration<double, std::milli>(Clock::now() - from).count();
}

struct Stats {
  std::mutex mu;
  std::vector<double> ms;
  uint64_t errors = 0;
  uint64_t notices = 0;
  std::string first_error;
  void Add(double v, uint64_t n) {
    std::lock_guard<std::mutex> lock(mu);
    ms.push_back(v);
    notices += n;
  }
  void Fail(const std::string& e) {
    std::lock_guard<std::mutex> lock(mu);
    if (errors++ == 0) first_error = e;
  }
  std::vector<std::pair<std::string, std::string>> Row() {
    std::lock_guard<std::mutex> lock(mu);
    std::sort(ms.begin(), ms.end());
    auto at = [&](double q) {
      return ms.empty() ? 0.0 : ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))];
    };
    return {{"calls", absl::StrCat(ms.size())},
            {"errors", absl::StrCat(errors)},
            {"notices_per_answer", absl::StrFormat("%.1f", ms.empty() ? 0.0 : 1.0 * notices / ms.size())},
            {"p50_ms", absl::StrFormat("%.2f", at(0.5))},
            {"p90_ms", absl::StrFormat("%.2f", at(0.9))},
            {"p99_ms", absl::StrFormat("%.2f", at(0.99))},
            {"max_ms", absl::StrFormat("%.2f", ms.empty() ? 0.0 : ms.back())}};
  }
};

void Print(const std::string& name, const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string json = absl::StrCat("{\"bench\":\"", name, "\"");
  std::string row = absl::StrFormat("%-34s", name);
  for (const auto& [k, v] : kv) {
    absl::StrAppend(&json, ",\"", k, "\":", v);
    absl::StrAppend(&row, " ", k, "=", v);
  }
  printf("%s\nJSON %s}\n", row.c_str(), json.c_str());
  fflush(stdout);
}

struct LatencyOptions {
  std::string address, ca, cert, key, peer, label = "query";
  uint64_t cases = 100000;
  int count = 2000, threads = 4, max_s = 120;
};

// Latency runs `count` calls of each kind from `threads` threads.
int Latency(const LatencyOptions& o) {
  Stats query, subject, timeline, with_peer;
  auto run = [&](const std::function<void(v1::Gateway::Stub&, uint64_t)>& call) {
    std::atomic<int> next{0};
    const auto deadline = Clock::now() + std::chrono::seconds(o.max_s);
    std::vector<std::thread> threads;
    for (int t = 0; t < o.threads; ++t) {
      threads.emplace_back([&, t] {
        auto stub = caseway::bench::GatewayStub(o.address, {o.ca, o.cert, o.key});
        std::mt19937_64 rng(t * 7919 + 1);
        while (next++ < o.count && Clock::now() < deadline) call(*stub, rng() % o.cases);
      });
    }
    for (auto& t : threads) t.join();
  };
  auto ask = [&](v1::Gateway::Stub& stub, v1::QueryPeerRequest req, Stats& stats) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::QueryPeerResponse resp;
    const auto t0 = Clock::now();
    grpc::Status s = stub.QueryPeer(&ctx, req, &resp);
    if (s.ok()) {
      stats.Add(Ms(t0), resp.notices_size());
    } else {
      stats.Fail(s.error_message());
    }
  };
  run([&](v1::Gateway::Stub& stub, uint64_t k) {
    v1::QueryPeerRequest req;
    req.set_peer(o.peer);
    req.set_purpose(kPurpose);
    req.set_case_id(caseway::bench::BenchCase(k));
    ask(stub, req, query);
  });
  Print(absl::StrCat(o.label, " by case id"), query.Row());
  run([&](v1::Gateway::Stub& stub, uint64_t k) {
    v1::QueryPeerRequest req;
    req.set_peer(o.peer);
    req.set_purpose(kPurpose);
    req.set_id_number(caseway::bench::BenchIdNumber(k));
    ask(stub, req, subject);
  });
  Print(absl::StrCat(o.label, " by identity number"), subject.Row());
  auto case_call = [&](v1::Gateway::Stub& stub, uint64_t k, Stats* stats, bool and_peer) {
    const auto t0 = Clock::now();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::CaseRequest req;
    req.set_purpose(kPurpose);
    req.set_case_id(caseway::bench::BenchCase(k));
    v1::CaseResponse resp;
    grpc::Status s = stub.Case(&ctx, req, &resp);
    if (!s.ok()) return stats->Fail(s.error_message());
    size_t n = resp.events_size();
    if (and_peer) {
      grpc::ClientContext qctx;
      qctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      v1::QueryPeerRequest q;
      q.set_peer(o.peer);
      q.set_purpose(kPurpose);
      q.set_case_id(req.case_id());
      v1::QueryPeerResponse answer;
      s = stub.QueryPeer(&qctx, q, &answer);
      if (!s.ok()) return stats->Fail(s.error_message());
      n += answer.notices_size();
    }
    stats->Add(Ms(t0), n);
  };
  run([&](v1::Gateway::Stub& stub, uint64_t k) { case_call(stub, k, &timeline, false); });
  Print(absl::StrCat(o.label, " timeline here"), timeline.Row());
  run([&](v1::Gateway::Stub& stub, uint64_t k) { case_call(stub, k, &with_peer, true); });
  Print(absl::StrCat(o.label, " timeline with the peer"), with_peer.Row());
  for (Stats* s : {&query, &subject, &timeline, &with_peer}) {
    if (s->errors > 0) fprintf(stderr, "first error: %s\n", s->first_error.c_str());
  }
  return 0;
}

struct FloodOptions {
  std::string target, ca;
  std::string flood_cert, flood_key, flood_as;
  std::string other_cert, other_key, other_as;
  uint64_t cases = 100000;
  int seconds = 20, flood_threads = 8, other_rate = 5, limit_per_minute = 120;
  std::string label = "query flood";
};

std::unique_ptr<v1::PeerExchange::Stub> PeerStub(const std::string& address, const std::string& ca,
                                                 const std::string& cert, const std::string& key) {
  return v1::PeerExchange::NewStub(caseway::bench::BenchChannel(address, {ca, cert, key}));
}

int Flood(const FloodOptions& o) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> flood_sent{0}, flood_answered{0}, flood_limited{0}, flood_other{0};
  Stats other;
  std::atomic<uint64_t> other_limited{0};
  auto query = [](v1::PeerExchange::Stub& stub, const std::string& as, uint64_t k, uint64_t n) {
    v1::QueryRequest q;
    q.set_asker(as);
    q.set_purpose(kPurpose);
    q.set_nonce(absl::StrFormat("%032x", n));
    q.set_case_id(caseway::bench::BenchCase(k));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::QueryResponse resp;
    return caseway::common::FromGrpcStatus(stub.Query(&ctx, q, &resp));
  };
  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(o.seconds);
  std::vector<std::thread> threads;
  for (int t = 0; t < o.flood_threads; ++t) {
    threads.emplace_back([&, t] {
      auto stub = PeerStub(o.target, o.ca, o.flood_cert, o.flood_key);
      uint64_t n = static_cast<uint64_t>(t) << 40;
      while (Clock::now() < end) {
        absl::Status s = query(*stub, o.flood_as, n % o.cases, n);
        ++n;
        ++flood_sent;
        if (s.ok()) {
          ++flood_answered;
        } else if (caseway::common::ReasonOf(s) == "QUERY_RATE_EXCEEDED") {
          ++flood_limited;
        } else {
          ++flood_other;
        }
      }
    });
  }
  threads.emplace_back([&] {
    auto stub = PeerStub(o.target, o.ca, o.other_cert, o.other_key);
    const auto period = std::chrono::microseconds(1000000 / std::max(1, o.other_rate));
    auto due = start;
    for (uint64_t n = 1ULL << 60; Clock::now() < end; ++n) {
      std::this_thread::sleep_until(due);
      due += period;
      const auto t0 = Clock::now();
      absl::Status s = query(*stub, o.other_as, n % o.cases, n);
      if (s.ok()) {
        other.Add(Ms(t0), 0);
      } else {
        if (caseway::common::ReasonOf(s) == "QUERY_RATE_EXCEEDED") ++other_limited;
        other.Fail(s.ToString());
      }
    }
  });
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const double burst = std::max(10.0, o.limit_per_minute / 10.0);
  const double allowed = burst + o.limit_per_minute / 60.0 * secs;
  auto row = other.Row();
  Print(o.label,
        {{"seconds", absl::StrFormat("%.1f", secs)},
         {"flood_sent", absl::StrCat(flood_sent.load())},
         {"flood_answered", absl::StrCat(flood_answered.load())},
         {"flood_refused_rate", absl::StrCat(flood_limited.load())},
         {"flood_other_errors", absl::StrCat(flood_other.load())},
         {"flood_allowed_by_limit", absl::StrFormat("%.0f", allowed)},
         {"other_answered", row[0].second},
         {"other_refused", absl::StrCat(other_limited.load())},
         {"other_errors", row[1].second},
         {"other_p50_ms", row[3].second},
         {"other_p99_ms", row[5].second}});
  if (other.errors > 0) fprintf(stderr, "other's first error: %s\n", other.first_error.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"caseway-bench-query: remote query and case timeline benchmarks against running "
               "nodes (bench/run.sh part `query` drives it)."};
  app.require_subcommand(1);
  LatencyOptions lo;
  auto* lat = app.add_subcommand("latency", "QueryPeer, Case and the timeline with a peer, as an office of A");
  lat->add_option("--a", lo.address, "A's address")->required();
  lat->add_option("--ca", lo.ca)->required();
  lat->add_option("--a-cert", lo.cert, "a client certificate of A")->required();
  lat->add_option("--a-key", lo.key)->required();
  lat->add_option("--peer", lo.peer, "the peer to ask (B)")->required();
  lat->add_option("--cases", lo.cases, "case ids bench-case-0..N-1 exist")->capture_default_str();
  lat->add_option("--count", lo.count, "calls of each kind")->capture_default_str();
  lat->add_option("--threads", lo.threads)->capture_default_str();
  lat->add_option("--max-s", lo.max_s, "time limit of each kind")->capture_default_str();
  lat->add_option("--label", lo.label)->capture_default_str();
  FloodOptions fo;
  auto* flood = app.add_subcommand("flood", "one node floods B with queries while another asks at a steady rate");
  flood->add_option("--target", fo.target, "B's address")->required();
  flood->add_option("--ca", fo.ca)->required();
  flood->add_option("--flood-cert", fo.flood_cert, "the flooding node's certificate")->required();
  flood->add_option("--flood-key", fo.flood_key)->required();
  flood->add_option("--flood-as", fo.flood_as, "its jurisdiction")->required();
  flood->add_option("--other-cert", fo.other_cert, "the other node's certificate")->required();
  flood->add_option("--other-key", fo.other_key)->required();
  flood->add_option("--other-as", fo.other_as, "its jurisdiction")->required();
  flood->add_option("--cases", fo.cases)->capture_default_str();
  flood->add_option("--seconds", fo.seconds)->capture_default_str()->check(CLI::Range(1, 600));
  flood->add_option("--flood-threads", fo.flood_threads)->capture_default_str();
  flood->add_option("--other-rate", fo.other_rate, "the other node's queries per second")->capture_default_str();
  flood->add_option("--limit-per-minute", fo.limit_per_minute, "B's limits.peer_queries_per_minute")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (lat->parsed()) return Latency(lo);
  if (flood->parsed()) return Flood(fo);
  return 2;
}
