// caseway-bench: load generator and probe for benchmarks against running nodes (bench/run.sh
// starts the nodes). Every loop is bounded by a count and a time limit.
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/util/delimited_message_util.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "caseway/v1/gateway.grpc.pb.h"
#include "bench/fanout.h"
#include "caseway/client/client.h"
#include "common/tls.h"

namespace {

namespace v1 = caseway::v1;
using Clock = std::chrono::steady_clock;
using caseway::bench::Notice1K;

struct Conn {
  std::string address, ca, cert, key;
};

std::unique_ptr<v1::Gateway::Stub> Stub(const Conn& c) {
  return caseway::bench::GatewayStub(c.address, {c.ca, c.cert, c.key});
}

struct Percentiles {
  double p50, p90, p99, max;
};
Percentiles Summarize(std::vector<double>& v) {
  if (v.empty()) return {0, 0, 0, 0};
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))]; };
  return {at(0.5), at(0.9), at(0.99), v.back()};
}

// Head returns (head, acked) of A's channel to `dest`.
std::pair<uint64_t, uint64_t> Head(v1::Gateway::Stub& a, const std::string& dest) {
  grpc::ClientContext ctx;
  v1::StatusResponse st;
  if (!a.Status(&ctx, v1::StatusRequest(), &st).ok()) return {0, 0};
  for (const auto& c : st.channels()) {
    if (c.destination() == dest) return {c.head(), c.acked()};
  }
  return {0, 0};
}

// WaitAcked polls until A's channel to dest has acked >= target or the limit passes.
bool WaitAcked(v1::Gateway::Stub& a, const std::string& dest, uint64_t target, int limit_s) {
  auto deadline = Clock::now() + std::chrono::seconds(limit_s);
  while (Clock::now() < deadline) {
    if (Head(a, dest).second >= target) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

void PrintResult(const std::string& name, const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string json = absl::StrCat("{\"bench\":\"", name, "\",\"cores\":", std::thread::hardware_concurrency());
  std::string row = absl::StrFormat("%-34s", name);
  for (const auto& [k, v] : kv) {
    absl::StrAppend(&json, ",\"", k, "\":", v);
    absl::StrAppend(&row, " ", k, "=", v);
  }
  printf("%s\nJSON %s}\n", row.c_str(), json.c_str());
  fflush(stdout);
}

// Series samples A's receipted count every 100 ms while a throughput run goes on, for the
// growth run: the rate per `interval` notices (does it fall as the B-trees grow?) and a file of
// (seconds, receipted) points to plot.
class Series {
 public:
  Series(const Conn& a_conn, std::string dest, uint64_t base)
      : probe_(Stub(a_conn)), dest_(std::move(dest)), base_(base), start_(Clock::now()) {
    thread_ = std::thread([this] {
      while (!stop_) {
        const uint64_t acked = Head(*probe_, dest_).second;
        const double t = std::chrono::duration<double>(Clock::now() - start_).count();
        if (acked >= base_) points_.emplace_back(t, acked - base_);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  // Finish stops sampling, writes the points to `file` ("seconds receipted" per line) and prints
  // the rate over each `interval` receipted notices.
  void Finish(const std::string& label, const std::string& file, uint64_t interval) {
    stop_ = true;
    thread_.join();
    // The last sample: the run ended when the probe saw every notice receipted.
    const uint64_t acked = Head(*probe_, dest_).second;
    if (acked >= base_) {
      points_.emplace_back(std::chrono::duration<double>(Clock::now() - start_).count(), acked - base_);
    }
    if (!file.empty()) {
      std::ofstream f(file, std::ios::trunc);
      f << "# seconds receipted\n";
      for (const auto& [t, n] : points_) f << absl::StrFormat("%.3f %d\n", t, n);
    }
    if (interval == 0) return;
    double last_t = 0;
    uint64_t next = interval;
    std::vector<double> rates;
    for (size_t i = 1; i < points_.size(); ++i) {
      const auto [t0, n0] = points_[i - 1];
      const auto [t1, n1] = points_[i];
      while (n1 >= next && n1 > n0) {  // the moment `next` was crossed, interpolated
        const double t = t0 + (t1 - t0) * double(next - n0) / double(n1 - n0);
        rates.push_back(interval / std::max(1e-6, t - last_t));
        PrintResult(absl::StrCat("growth ", label), {
            {"at", absl::StrCat(next)}, {"notices_per_s", absl::StrFormat("%.0f", rates.back())}});
        last_t = t;
        next += interval;
      }
    }
    if (rates.size() < 2) return;
    const size_t tenth = std::max<size_t>(1, rates.size() / 10);
    auto mean = [&](size_t from, size_t to) {
      double sum = 0;
      for (size_t i = from; i < to; ++i) sum += rates[i];
      return sum / double(to - from);
    };
    const double first = mean(0, tenth), last = mean(rates.size() - tenth, rates.size());
    PrintResult(absl::StrCat("growth summary ", label), {
        {"intervals", absl::StrCat(rates.size())}, {"interval", absl::StrCat(interval)},
        {"first_tenth_per_s", absl::StrFormat("%.0f", first)},
        {"last_tenth_per_s", absl::StrFormat("%.0f", last)},
        {"min_per_s", absl::StrFormat("%.0f", *std::min_element(rates.begin(), rates.end()))},
        {"last_over_first", absl::StrFormat("%.3f", last / first)}});
  }

 private:
  std::unique_ptr<v1::Gateway::Stub> probe_;
  const std::string dest_;
  const uint64_t base_;
  const Clock::time_point start_;
  std::atomic<bool> stop_{false};
  std::vector<std::pair<double, uint64_t>> points_;  // written by thread_ only, until Finish
  std::thread thread_;
};

// How the benchmark's notice ids are made (--ids). The indexes a node keeps by notice id grow at
// their right edge when ids follow publishing order, and take each insert on a random page when
// they are random (PROFILE.md, "How cost grows with real notice ids and cases").
enum class IdOrder {
  kOrdered,  // "<run>-<i>": publishing order (a record id from a database sequence)
  kUuid4,    // a random UUID (version 4)
  kUuid7,    // a time-ordered UUID (version 7, RFC 9562): milliseconds since 1970, then random
};

// NoticeId is the id of the run's `i`-th notice.
std::string NoticeId(const std::string& run, uint64_t i, IdOrder order) {
  if (order == IdOrder::kOrdered) return absl::StrCat(run, "-", i);
  // SplitMix64's finalizer: a bijection, so the random bits differ for every i of a run; the
  // run's hash keeps them apart from another run's in the same database.
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  const uint64_t x = i ^ std::hash<std::string>{}(run);
  uint64_t hi = mix(x + 0x9e3779b97f4a7c15ULL), lo = mix(x);
  if (order == IdOrder::kUuid7) {
    const uint64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    hi = (ms << 16) | (hi & 0xffff);
  }
  hi = (hi & ~0xf000ULL) | (order == IdOrder::kUuid7 ? 0x7000ULL : 0x4000ULL);  // version
  lo = (lo & ~(3ULL << 62)) | (2ULL << 62);                                    // variant
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff,
                         lo >> 48, lo & 0xffffffffffffULL);
}

struct ThroughputOptions {
  int clients = 8;
  int batch = 100;
  uint64_t count = 100000;
  int max_s = 60;
  std::string label = "run";
  bool wait = true;
  uint64_t cases = 0;
  size_t size = 1024;
  std::string series_file;
  uint64_t interval = 0;
  IdOrder ids = IdOrder::kOrdered;
};

int Throughput(const Conn& a_conn, const std::string& origin, const std::string& dest,
               const ThroughputOptions& o) {
  const int clients = o.clients, batch = o.batch, max_s = o.max_s;
  const uint64_t count = o.count, cases = o.cases;
  const std::string& label = o.label;
  if (o.size > caseway::bench::LargestNoticeBytes() + 64) {
    fprintf(stderr, "--size: at most %zu bytes (the largest valid notice)\n",
            caseway::bench::LargestNoticeBytes());
    return 2;
  }
  const v1::Notice shape = caseway::bench::SizedNotice("shape", origin, dest, o.size);
  auto make = [&](const std::string& id) {
    v1::Notice n = shape;
    n.set_notice_id(id);
    return n;
  };
  auto probe = Stub(a_conn);
  const uint64_t base = Head(*probe, dest).first;
  const std::string run = absl::StrCat(label, "-", std::chrono::system_clock::now().time_since_epoch().count());
  std::atomic<uint64_t> next{0}, published{0}, errors{0};
  std::unique_ptr<Series> series;
  if (!o.series_file.empty() || o.interval > 0) series = std::make_unique<Series>(a_conn, dest, base);
  // Each client's connection (a mutual-TLS handshake each: 64 of them for the unary part) is set
  // up before the clock starts, so that the rate is the callers' publishing, not their connecting.
  std::vector<std::unique_ptr<v1::Gateway::Stub>> stubs;
  for (int t = 0; t < clients; ++t) {
    auto channel = caseway::bench::BenchChannel(a_conn.address, {a_conn.ca, a_conn.cert, a_conn.key});
    if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30))) {
      fprintf(stderr, "client %d: not connected to %s within 30 s\n", t, a_conn.address.c_str());
      return 1;
    }
    stubs.push_back(v1::Gateway::NewStub(channel));
  }
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::seconds(max_s);
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      v1::Gateway::Stub* stub = stubs[t].get();
      while (Clock::now() < deadline) {
        uint64_t first = next.fetch_add(batch);
        if (first >= count) break;
        uint64_t n = std::min<uint64_t>(batch, count - first);
        // As the client library does: UNAVAILABLE is retried (publishing is idempotent).
        grpc::Status s;
        if (batch == 1) {
          v1::PublishRequest req;
          *req.mutable_notice() = make(NoticeId(run, first, o.ids));
          caseway::bench::SpreadCase(*req.mutable_notice(), first, cases);
          v1::PublishResult resp;
          s = caseway::client::CallIdempotent(
              [&](grpc::ClientContext* ctx) { return stub->Publish(ctx, req, &resp); });
        } else {
          v1::PublishBatchRequest req;
          for (uint64_t i = 0; i < n; ++i) {
            *req.add_notices() = make(NoticeId(run, first + i, o.ids));
            caseway::bench::SpreadCase(*req.mutable_notices(req.notices_size() - 1), first + i, cases);
          }
          v1::PublishBatchResponse resp;
          s = caseway::client::CallIdempotent(
              [&](grpc::ClientContext* ctx) { return stub->PublishBatch(ctx, req, &resp); });
        }
        if (s.ok()) {
          published += n;
        } else if (errors++ == 0) {
          fprintf(stderr, "first error: %d %s\n", s.error_code(), s.error_message().c_str());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double publish_s = std::chrono::duration<double>(Clock::now() - start).count();
  const bool done = o.wait && WaitAcked(*probe, dest, base + published.load(), 120);
  const double total_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (series) series->Finish(label, o.series_file, o.interval);
  PrintResult(absl::StrCat("throughput ", label), {
      {"clients", absl::StrCat(clients)}, {"batch", absl::StrCat(batch)},
      {"notice_bytes", absl::StrCat(shape.ByteSizeLong())},
      {"mb_per_s", absl::StrFormat("%.1f", published.load() * double(shape.ByteSizeLong()) / total_s / 1e6)},
      {"notices", absl::StrCat(published.load())}, {"errors", absl::StrCat(errors.load())},
      {"notices_per_s", absl::StrFormat("%.0f", published.load() / total_s)},
      {"publish_only_per_s", absl::StrFormat("%.0f", published.load() / publish_s)},
      {"all_receipted", done ? "true" : "false"}});
  return done && errors == 0 ? 0 : 1;
}

// Latency: open-loop unary publishes at `rate`/s for `seconds`; a consumer on B reads its inbox
// (with acks) and records publish -> delivered-from-B's-store for each notice.
int Latency(const Conn& a_conn, const Conn& b_conn, const std::string& origin,
            const std::string& dest, int rate, int seconds, int batch_ms,
            const std::string& samples_file) {
  const std::string run = absl::StrCat("lat", rate, "-", std::chrono::system_clock::now().time_since_epoch().count());
  const uint64_t total = static_cast<uint64_t>(rate) * seconds;
  std::vector<Clock::time_point> sent(total);
  std::vector<std::atomic<bool>> sent_set(total);
  std::vector<double> latencies;
  std::vector<double> acks;  // publish -> acknowledged by A (stored, fsynced), per call
  std::vector<double> at_b;  // B's received_at (its writer storing the batch) -> delivered
  std::mutex mu;
  std::atomic<bool> stop{false};
  // Consumer.
  std::thread consumer([&] {
    auto b = Stub(b_conn);
    grpc::ClientContext ctx;
    auto stream = b->Inbox(&ctx);
    v1::InboxRequest start;
    start.mutable_start()->set_purpose("caseway benchmark");
    start.mutable_start()->set_follow(true);
    start.mutable_start()->set_ack(true);
    start.mutable_start()->set_window(10000);
    stream->Write(start);
    v1::InboxResponse resp;
    v1::InboxRequest pending;
    std::thread stopper([&] {
      while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ctx.TryCancel();
    });
    while (stream->Read(&resp)) {
      if (!resp.has_item()) {
        if (pending.ack().inbox_seqs_size() > 0) stream->Write(pending);
        pending.Clear();
        continue;
      }
      auto now = Clock::now();
      const std::string& id = resp.item().notice().notice_id();
      if (id.rfind(run, 0) == 0) {
        uint64_t i = std::stoull(id.substr(run.size() + 1));
        if (i < total && sent_set[i]) {
          const int64_t stored_us = google::protobuf::util::TimeUtil::TimestampToMicroseconds(
              resp.item().received_at());
          const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
              std::chrono::system_clock::now().time_since_epoch()).count();
          std::lock_guard<std::mutex> lock(mu);
          latencies.push_back(std::chrono::duration<double, std::milli>(now - sent[i]).count());
          at_b.push_back((now_us - stored_us) / 1000.0);
        }
      }
      // Ack in groups (one commit per group at B), as the client library does.
      pending.mutable_ack()->add_inbox_seqs(resp.item().inbox_seq());
      if (pending.ack().inbox_seqs_size() >= 64) {
        stream->Write(pending);
        pending.Clear();
      }
    }
    stopper.join();
  });
  // Open-loop publishers: 16 threads share the schedule. With batch_ms, every batch_ms a
  // PublishBatch of rate * batch_ms / 1000 notices is due; otherwise one unary Publish per notice.
  const uint64_t per = batch_ms > 0 ? std::max<uint64_t>(1, static_cast<uint64_t>(rate) * batch_ms / 1000) : 1;
  const auto t0 = Clock::now() + std::chrono::milliseconds(200);
  std::atomic<uint64_t> next{0}, errors{0}, in_flight{0};
  constexpr uint64_t kMaxInFlight = 20000;  // bounded: past it the schedule slips (achieved_per_s)
  std::vector<std::thread> pubs;
  std::vector<std::unique_ptr<v1::Gateway::Stub>> stubs;  // outlive the calls still in flight
  for (int t = 0; t < 16; ++t) stubs.push_back(Stub(a_conn));
  for (int t = 0; t < 16; ++t) {
    pubs.emplace_back([&, t] {
      v1::Gateway::Stub* a = stubs[t].get();
      for (;;) {
        uint64_t first = next.fetch_add(per);
        if (first >= total) break;
        uint64_t n = std::min<uint64_t>(per, total - first);
        auto due = t0 + std::chrono::nanoseconds(static_cast<int64_t>(first * 1e9 / rate));
        std::this_thread::sleep_until(due);
        grpc::ClientContext ctx;
        grpc::Status s;
        if (per == 1) {
          // Unary calls are issued without waiting for the answer (gRPC's callback API): the
          // offered rate is kept whatever the latency (16 blocking senders capped it at
          // 16 / latency, ~2,300/s, and measured the queue in the load generator).
          struct Call {
            grpc::ClientContext ctx;
            v1::PublishRequest req;
            v1::PublishResult resp;
            Clock::time_point sent;
          };
          auto* call = new Call;
          // Answered or failed within 30 s: the wait below outlives every call in flight.
          call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
          *call->req.mutable_notice() = Notice1K(absl::StrCat(run, "-", first), origin, dest);
          while (in_flight.load() >= kMaxInFlight) std::this_thread::sleep_for(std::chrono::microseconds(200));
          ++in_flight;
          sent[first] = call->sent = Clock::now();
          sent_set[first] = true;
          a->async()->Publish(&call->ctx, &call->req, &call->resp, [call, &errors, &in_flight, &acks, &mu](grpc::Status st) {
            if (!st.ok() && errors++ == 0) {
              fprintf(stderr, "first error: %d %s\n", st.error_code(), st.error_message().c_str());
            }
            if (st.ok()) {
              const double ms = std::chrono::duration<double, std::milli>(Clock::now() - call->sent).count();
              std::lock_guard<std::mutex> lock(mu);
              acks.push_back(ms);
            }
            delete call;
            --in_flight;
          });
          continue;
        } else {
          v1::PublishBatchRequest req;
          for (uint64_t i = first; i < first + n; ++i) {
            *req.add_notices() = Notice1K(absl::StrCat(run, "-", i), origin, dest);
          }
          const auto now = Clock::now();
          for (uint64_t i = first; i < first + n; ++i) {
            sent[i] = now;
            sent_set[i] = true;
          }
          v1::PublishBatchResponse resp;
          s = a->PublishBatch(&ctx, req, &resp);
          if (s.ok()) {
            const double ms = std::chrono::duration<double, std::milli>(Clock::now() - now).count();
            std::lock_guard<std::mutex> lock(mu);
            acks.push_back(ms);
          }
        }
        if (!s.ok()) errors += n;
      }
    });
  }
  for (auto& t : pubs) t.join();
  const auto answered_by = Clock::now() + std::chrono::seconds(60);
  while (in_flight.load() > 0 && Clock::now() < answered_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double achieved = total / std::chrono::duration<double>(Clock::now() - t0).count();
  // Drain: wait until every notice arrived (bounded).
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (latencies.size() + errors >= total) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop = true;
  consumer.join();
  Percentiles p = Summarize(latencies);
  Percentiles ack, b_part;
  {
    std::lock_guard<std::mutex> lock(mu);
    ack = Summarize(acks);
    b_part = Summarize(at_b);
  }
  if (!samples_file.empty() && !latencies.empty()) {
    // The distribution to plot: 1,000 quantiles and the maximum ("share ms" per line).
    std::ofstream f(samples_file, std::ios::trunc);
    f << "# share_delivered_within ms\n";
    for (int q = 1; q <= 1000; ++q) {
      const size_t i = std::min(latencies.size() - 1, latencies.size() * q / 1000);
      f << absl::StrFormat("%.3f %.3f\n", q / 1000.0, latencies[q == 1000 ? latencies.size() - 1 : i]);
    }
  }
  PrintResult(absl::StrCat("latency ", rate, "/s", per > 1 ? absl::StrCat(" batch/", batch_ms, "ms") : " unary"), {
      {"offered_per_s", absl::StrCat(rate)}, {"achieved_per_s", absl::StrFormat("%.0f", achieved)},
      {"delivered", absl::StrCat(latencies.size())}, {"errors", absl::StrCat(errors.load())},
      {"p50_ms", absl::StrFormat("%.2f", p.p50)}, {"p90_ms", absl::StrFormat("%.2f", p.p90)},
      {"p99_ms", absl::StrFormat("%.2f", p.p99)}, {"max_ms", absl::StrFormat("%.2f", p.max)},
      {"ack_p50_ms", absl::StrFormat("%.2f", ack.p50)}, {"ack_p99_ms", absl::StrFormat("%.2f", ack.p99)},
      {"b_stored_to_delivered_p50_ms", absl::StrFormat("%.2f", b_part.p50)},
      {"b_stored_to_delivered_p99_ms", absl::StrFormat("%.2f", b_part.p99)}});
  return 0;
}

int WaitCaughtUp(const Conn& a_conn, const std::string& dest, int max_s, const std::string& label) {
  auto a = Stub(a_conn);
  auto [head, acked0] = Head(*a, dest);
  const auto start = Clock::now();
  bool done = WaitAcked(*a, dest, head, max_s);
  double s = std::chrono::duration<double>(Clock::now() - start).count();
  auto [head2, acked] = Head(*a, dest);
  PrintResult(label, {{"backlog", absl::StrCat(head - acked0)},
                      {"notices_per_s", absl::StrFormat("%.0f", (acked - acked0) / s)},
                      {"seconds", absl::StrFormat("%.2f", s)}, {"caught_up", done ? "true" : "false"}});
  return done ? 0 : 1;
}

// GenJsonl writes `count` 1 KiB notices for `caseway publish`: JSON lines, or with `binary`
// length-delimited binary records (--format binpb).
int GenJsonl(const std::string& out, uint64_t count, const std::string& origin, const std::string& dest,
             bool binary) {
  std::ofstream f(out, std::ios::trunc | std::ios::binary);
  const std::string run = absl::StrCat("imp-", std::chrono::system_clock::now().time_since_epoch().count());
  std::string line;
  for (uint64_t i = 0; i < count; ++i) {
    line.clear();
    const v1::Notice n = Notice1K(absl::StrCat(run, "-", i), origin, dest);
    if (binary) {
      google::protobuf::io::OstreamOutputStream os(&f);
      google::protobuf::util::SerializeDelimitedToZeroCopyStream(n, &os);
      continue;
    }
    (void)google::protobuf::util::MessageToJsonString(n, &line);
    f << line << '\n';
  }
  return f ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"caseway-bench: benchmark load and probes against running Caseway nodes "
               "(see bench/README.md; bench/run.sh drives it)."};
  app.require_subcommand(1);
  Conn a, b;
  std::string origin = "360102", dest = "440305", label = "run", out;
  int max_s = 60, rate = 1000, seconds = 10;
  uint64_t count = 100000;
  auto conn_flags = [&](CLI::App* c, bool with_b) {
    c->add_option("--a", a.address, "origin node address")->required();
    c->add_option("--ca", a.ca, "CA")->required();
    c->add_option("--a-cert", a.cert, "client cert of the origin")->required();
    c->add_option("--a-key", a.key, "its key")->required();
    if (with_b) {
      c->add_option("--b", b.address, "destination node address")->required();
      c->add_option("--b-cert", b.cert, "client cert of the destination")->required();
      c->add_option("--b-key", b.key, "its key")->required();
    }
    c->add_option("--origin", origin, "origin jurisdiction")->capture_default_str();
    c->add_option("--dest", dest, "destination jurisdiction")->capture_default_str();
  };
  auto* tp = app.add_subcommand("throughput", "publish COUNT notices (1 KiB unless --size) with CLIENTS clients until all are receipted at A");
  conn_flags(tp, false);
  ThroughputOptions to;
  tp->add_option("--clients", to.clients)->capture_default_str();
  tp->add_option("--batch", to.batch, "notices per request (1 = unary Publish)")->capture_default_str();
  tp->add_option("--count", to.count)->capture_default_str();
  tp->add_option("--max-s", to.max_s, "publishing time limit")->capture_default_str();
  tp->add_option("--label", to.label)->capture_default_str();
  bool no_wait = false;
  tp->add_flag("--no-wait", no_wait, "do not wait for receipts (destination offline)");
  tp->add_option("--cases", to.cases,
                 "spread the notices over this many cases and subjects (0: one case)")
      ->capture_default_str();
  tp->add_option("--size", to.size,
                 "serialized bytes per notice (256 up to the largest valid notice, ~25 KiB)")
      ->capture_default_str();
  const std::map<std::string, IdOrder> id_orders = {
      {"ordered", IdOrder::kOrdered}, {"uuid4", IdOrder::kUuid4}, {"uuid7", IdOrder::kUuid7}};
  std::string ids = "ordered";
  tp->add_option("--ids", ids,
                 "notice ids: ordered (<run>-<i>, publishing order), uuid4 (random UUIDs), "
                 "uuid7 (time-ordered UUIDs)")
      ->check(CLI::IsMember(id_orders))
      ->capture_default_str();
  tp->add_option("--series", to.series_file,
                 "write 'seconds receipted' every 100 ms to this file (for plots)");
  tp->add_option("--interval", to.interval,
                 "print the end-to-end rate over every this many receipted notices (0: none)")
      ->capture_default_str();
  auto* lat = app.add_subcommand("latency", "open-loop publishes at RATE/s; publish -> stored at B percentiles");
  conn_flags(lat, true);
  lat->add_option("--rate", rate)->capture_default_str();
  lat->add_option("--seconds", seconds)->capture_default_str();
  int batch_ms = 0;
  lat->add_option("--batch-ms", batch_ms, "publish a batch every N ms instead of unary calls")
      ->capture_default_str();
  std::string samples_file;
  lat->add_option("--samples", samples_file,
                  "write the latency distribution (1,000 quantiles: 'share ms' per line) to this file");
  auto* wait = app.add_subcommand("wait-caught-up", "wait until A's channel to DEST is receipted to its head");
  conn_flags(wait, false);
  wait->add_option("--max-s", max_s)->capture_default_str();
  wait->add_option("--label", label)->capture_default_str();
  auto* gen = app.add_subcommand("gen-jsonl", "write COUNT 1 KiB notices as protobuf JSON lines");
  gen->add_option("--out", out)->required();
  gen->add_option("--count", count)->capture_default_str();
  gen->add_option("--origin", origin)->capture_default_str();
  gen->add_option("--dest", dest)->capture_default_str();
  bool gen_binary = false;
  gen->add_flag("--binpb", gen_binary,
                "length-delimited binary records (caseway publish --format binpb) instead of JSON");
  caseway::bench::FanoutPkiOptions fp;
  auto* fpki = app.add_subcommand("fanout-pki", "make COUNT subscriber node identities for the fan-out run");
  fpki->add_option("--ca-cert", fp.ca_cert)->required();
  fpki->add_option("--ca-key", fp.ca_key)->required();
  fpki->add_option("--federation", fp.federation)->required();
  fpki->add_option("--regions", fp.regions_csv, "region codes CSV (bench/data/regions/areas.csv)")->required();
  fpki->add_option("--hub", fp.hub, "the hub's jurisdiction")->required();
  fpki->add_option("--directory", fp.base_directory, "federation directory to extend")->required();
  fpki->add_option("--out", fp.out_dir)->required();
  fpki->add_option("--count", fp.count)->capture_default_str();
  caseway::bench::FanoutOptions fo;
  auto* fan = app.add_subcommand("fanout", "hold one Subscribe stream per identity at the hub; publish and measure");
  fan->add_option("--hub-address", fo.hub_address)->required();
  fan->add_option("--hub", fo.hub, "the hub's jurisdiction")->required();
  fan->add_option("--ca", fo.ca)->required();
  fan->add_option("--publisher-cert", fo.publisher_cert, "client certificate of the hub's jurisdiction")->required();
  fan->add_option("--publisher-key", fo.publisher_key)->required();
  fan->add_option("--pki", fo.pki_dir, "directory written by fanout-pki")->required();
  fan->add_option("--hub-pid", fo.hub_pid, "the hub's process id (for RSS)")->required();
  fan->add_option("--streams", fo.streams)->capture_default_str();
  fan->add_option("--per-stream", fo.per_stream, "notices published to each stream's channel")->capture_default_str();
  fan->add_option("--clients", fo.clients)->capture_default_str();
  fan->add_option("--batch", fo.batch)->capture_default_str();
  fan->add_option("--max-s", fo.max_s, "time limit of the whole run")->capture_default_str();
  fan->add_flag("--publish-first", fo.publish_first, "publish before the streams connect (a backlog to drain)");
  fan->add_option("--label", fo.label)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (fpki->parsed()) return caseway::bench::FanoutPki(fp);
  if (fan->parsed()) {
    struct rlimit files;  // one connection per stream
    if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
      files.rlim_cur = files.rlim_max;
      setrlimit(RLIMIT_NOFILE, &files);
    }
    const std::string hub = fo.hub;
    return caseway::bench::Fanout(
        fo, [&](const std::string& id, const std::string& d) { return Notice1K(id, hub, d); },
        PrintResult);
  }
  b.ca = a.ca;
  if (tp->parsed()) {
    to.wait = !no_wait;
    to.ids = id_orders.at(ids);
    return Throughput(a, origin, dest, to);
  }
  if (lat->parsed()) return Latency(a, b, origin, dest, rate, seconds, batch_ms, samples_file);
  if (wait->parsed()) return WaitCaughtUp(a, dest, max_s, label);
  if (gen->parsed()) return GenJsonl(out, count, origin, dest, gen_binary);
  return 2;
}
