// caseway-bench-flood: a legitimate client's publish latency and the node's memory while hostile
// or careless callers flood it (issue #10's list): large requests holding a million one-byte
// items, idle Subscribe streams, Subscribe streams opened and cancelled in a loop, and idle Inbox
// streams, from a certificate without an identity, from a peer node, and from a client of the
// node. Each flood is bounded in count and time. Prints one row per flood: the legitimate
// client's publish p50/p99 (unary, at --rate per second) against the unloaded baseline, and the
// node's resident memory (VmRSS, peak over the flood).
#include <CLI/CLI.hpp>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "caseway/v1/gateway.grpc.pb.h"
#include "bench/fanout.h"
#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/tls.h"

namespace {

namespace v1 = caseway::v1;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string address, ca;
  std::string client_cert, client_key, peer_cert, peer_key, nobody_cert, nobody_key;
  std::string flood_cert, flood_key;  // another client of the node (a careless integrator)
  std::string peer_jurisdiction = "440305";
  std::string destination = "440305";
  int pid = 0;
  int seconds = 10;
  int rate = 200;
  int concurrency = 64;
  int streams = 2000;
  int run_flood = -1;  // in a child process: run this flood until killed (or a time limit)
  int nice = 0;        // ... at this priority
  std::vector<int> only;  // the floods to run (by number, from 0; default: all)
};

std::shared_ptr<grpc::Channel> Channel(const Options& o, const std::string& cert,
                                       const std::string& key, int index = 0) {
  auto creds = caseway::common::ChannelCredentials({o.ca, cert, key});
  if (!creds.ok()) {
    fprintf(stderr, "%s\n", creds.status().ToString().c_str());
    exit(2);
  }
  grpc::ChannelArguments args;
  args.SetInt("caseway.channel", index);  // distinct arguments: a connection of its own
  args.SetMaxSendMessageSize(64 << 20);
  return grpc::CreateCustomChannel(o.address, *creds, args);
}

long RssMb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6)) / 1024;
  }
  return 0;
}

struct Measure {
  double p50 = 0, p99 = 0;
  int failed = 0;
  long peak_rss = 0;
};

// Legit publishes at `rate`/s for `seconds` while sampling the node's RSS.
Measure MeasureLegit(const Options& o, const std::string& label) {
  auto stub = v1::Gateway::NewStub(Channel(o, o.client_cert, o.client_key, 1));
  std::vector<double> ms;
  Measure m;
  const auto end = Clock::now() + std::chrono::seconds(o.seconds);
  const auto gap = std::chrono::microseconds(1000000 / std::max(1, o.rate));
  auto next = Clock::now();
  int i = 0;
  while (Clock::now() < end) {
    std::this_thread::sleep_until(next);
    next += gap;
    v1::PublishRequest req;
    *req.mutable_notice() =
        caseway::bench::Notice1K(absl::StrCat("legit-", label, "-", i++), "360102", o.destination);
    v1::PublishResult resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const auto t0 = Clock::now();
    grpc::Status s = stub->Publish(&ctx, req, &resp);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!s.ok()) ++m.failed;
    m.peak_rss = std::max(m.peak_rss, RssMb(o.pid));
  }
  std::sort(ms.begin(), ms.end());
  if (!ms.empty()) {
    m.p50 = ms[ms.size() / 2];
    m.p99 = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
  }
  return m;
}

// A request of about 3 MB: one notice holding a million one-byte verification items.
std::string BigRequest() {
  v1::PublishBatchRequest req;
  v1::Notice n = caseway::bench::Notice1K("big", "360102", "440305");
  auto* vr = n.mutable_verification_request();
  vr->clear_items();
  for (int i = 0; i < 1000000; ++i) vr->add_items("x");
  *req.add_notices() = n;
  return req.SerializeAsString();
}

// Floods run on their own threads until `stop`.
using Flood = std::function<void(const Options&, std::atomic<bool>& stop, std::atomic<long>& sent)>;

Flood BigRequests(bool identity) {
  return [identity](const Options& o, std::atomic<bool>& stop, std::atomic<long>& sent) {
    const std::string bytes = BigRequest();
    std::vector<std::thread> threads;
    for (int t = 0; t < o.concurrency; ++t) {
      threads.emplace_back([&, t] {
        grpc::GenericStub stub(identity ? Channel(o, o.flood_cert, o.flood_key, 100 + t)
                                        : Channel(o, o.nobody_cert, o.nobody_key, 100 + t));
        while (!stop) {
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
          grpc::Slice slice(bytes);
          grpc::ByteBuffer request(&slice, 1), response;
          std::promise<void> done;
          stub.UnaryCall(&ctx, "/caseway.v1.Gateway/PublishBatch", grpc::StubOptions(), &request,
                         &response, [&](grpc::Status) { done.set_value(); });
          done.get_future().wait();
          ++sent;
          if (!identity) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      });
    }
    for (auto& t : threads) t.join();
  };
}

// Streams opened and held (never read), `o.streams` of them, over 8 connections.
template <typename Service, typename Req, typename Resp>
Flood IdleStreams(bool identity_peer, bool inbox) {
  return [=](const Options& o, std::atomic<bool>& stop, std::atomic<long>& sent) {
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    for (int c = 0; c < 8; ++c) {
      channels.push_back(identity_peer ? Channel(o, o.peer_cert, o.peer_key, 200 + c)
                         : inbox       ? Channel(o, o.flood_cert, o.flood_key, 200 + c)
                                       : Channel(o, o.nobody_cert, o.nobody_key, 200 + c));
    }
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<std::unique_ptr<grpc::ClientReaderWriter<Req, Resp>>> streams;
    for (int i = 0; i < o.streams && !stop; ++i) {
      auto stub = Service::NewStub(channels[i % channels.size()]);
      contexts.push_back(std::make_unique<grpc::ClientContext>());
      contexts.back()->set_deadline(std::chrono::system_clock::now() +
                                    std::chrono::seconds(o.seconds * 3));
      if constexpr (std::is_same_v<Req, v1::InboxRequest>) {
        streams.push_back(stub->Inbox(contexts.back().get()));
        Req start;
        start.mutable_start()->set_follow(true);
        start.mutable_start()->set_purpose("caseway benchmark");
        streams.back()->Write(start);
      } else {
        streams.push_back(stub->Subscribe(contexts.back().get()));
        if (identity_peer) {
          Req open;
          open.mutable_open()->set_destination(o.peer_jurisdiction);
          streams.back()->Write(open);
        }
      }
      ++sent;
    }
    while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (auto& c : contexts) c->TryCancel();
    for (auto& s : streams) s->Finish();
  };
}

// Subscribe opened, first batch taken, cancelled; again and again, as the peer.
Flood SubscribeChurn() {
  return [](const Options& o, std::atomic<bool>& stop, std::atomic<long>& sent) {
    auto stub = v1::PeerExchange::NewStub(Channel(o, o.peer_cert, o.peer_key, 300));
    while (!stop) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      auto stream = stub->Subscribe(&ctx);
      v1::SubscribeRequest open;
      open.mutable_open()->set_destination(o.peer_jurisdiction);
      stream->Write(open);
      v1::SubscribeResponse resp;
      stream->Read(&resp);
      ctx.TryCancel();
      stream->Finish();
      ++sent;
    }
  };
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"caseway-bench-flood: a legitimate client's publish p99 and the node's memory under floods"};
  app.add_option("--address", o.address, "the node (host:port)")->required();
  app.add_option("--ca", o.ca, "federation CA")->required();
  app.add_option("--client-cert", o.client_cert, "a client of the node's jurisdiction")->required();
  app.add_option("--client-key", o.client_key)->required();
  app.add_option("--peer-cert", o.peer_cert, "the peer node's certificate")->required();
  app.add_option("--peer-key", o.peer_key)->required();
  app.add_option("--peer", o.peer_jurisdiction, "the peer's jurisdiction");
  app.add_option("--nobody-cert", o.nobody_cert, "a CA-signed certificate without an identity")->required();
  app.add_option("--nobody-key", o.nobody_key)->required();
  app.add_option("--flood-cert", o.flood_cert, "another client of the node (default: --client-cert)");
  app.add_option("--flood-key", o.flood_key);
  app.add_option("--pid", o.pid, "the node's process id (for its memory)")->required();
  app.add_option("--seconds", o.seconds, "seconds per measurement");
  app.add_option("--rate", o.rate, "legitimate publishes per second");
  app.add_option("--concurrency", o.concurrency, "concurrent large requests");
  app.add_option("--streams", o.streams, "streams per stream flood");
  app.add_option("--run-flood", o.run_flood, "(internal) run flood N in this process, then exit");
  app.add_option("--nice", o.nice, "(internal) the flood process's nice value");
  app.add_option("--only", o.only, "run only these floods (numbers from 0, in the table's order)")
      ->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  if (o.flood_cert.empty()) {
    o.flood_cert = o.client_cert;
    o.flood_key = o.client_key;
  }
  const std::vector<std::pair<std::string, Flood>> floods = {
      {"large requests, no identity", BigRequests(false)},
      {"large requests, another client", BigRequests(true)},
      {"idle Subscribe, no identity", IdleStreams<v1::PeerExchange, v1::SubscribeRequest, v1::SubscribeResponse>(false, false)},
      {"idle Subscribe, the peer", IdleStreams<v1::PeerExchange, v1::SubscribeRequest, v1::SubscribeResponse>(true, false)},
      {"idle Inbox, another client", IdleStreams<v1::Gateway, v1::InboxRequest, v1::InboxResponse>(false, true)},
      {"Subscribe open/cancel loop, the peer", SubscribeChurn()},
  };
  if (o.run_flood >= 0) {
    // The flooder: its own process, so that its CPU is scheduled apart from the measuring
    // client's; at --nice 19 it stands in for an attacker on another machine.
    if (o.run_flood >= static_cast<int>(floods.size())) return 2;
    setpriority(PRIO_PROCESS, 0, o.nice);
    static std::atomic<bool> stop{false};
    signal(SIGTERM, [](int) { stop = true; });  // the parent's end of the measurement
    std::atomic<long> sent{0};
    std::thread limit([&] {  // bounded even if the parent never ends it
      std::this_thread::sleep_for(std::chrono::seconds(o.seconds + 20));
      stop = true;
    });
    limit.detach();
    std::thread report([&] {
      while (!stop) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        fprintf(stderr, "sent %ld\n", sent.load());
      }
    });
    report.detach();
    floods[o.run_flood].second(o, stop, sent);
    printf("%ld\n", sent.load());
    fflush(stdout);
    _exit(0);
  }

  // The unloaded p99 moves from one measurement to the next on a shared machine: it is measured
  // before every flood, and each flood's ratio is taken against the median of all of them.
  struct Row {
    std::string name;
    int nice;
    Measure m;
    long sent;
  };
  std::vector<Row> rows;
  std::vector<double> base_p99;
  // Each flood twice, from a child process: at the measuring client's priority (the flooder's
  // CPU competes with node and client on the same two cores), then at nice 19 (as if the flooder
  // ran on another machine: what remains is what the flood costs the node).
  int round = 0;
  for (size_t f = 0; f < floods.size(); ++f) {
    if (!o.only.empty() && std::find(o.only.begin(), o.only.end(), static_cast<int>(f)) == o.only.end()) {
      continue;
    }
    Measure base = MeasureLegit(o, absl::StrCat("baseline", f));
    rows.push_back({"none (baseline)", -1, base, 0});
    base_p99.push_back(base.p99);
    for (int nice : {0, 19}) {
      std::vector<std::string> args(argv, argv + argc);
      args.push_back("--run-flood");
      args.push_back(std::to_string(f));
      args.push_back("--nice");
      args.push_back(std::to_string(nice));
      std::vector<char*> cargs;
      for (auto& a : args) cargs.push_back(a.data());
      cargs.push_back(nullptr);
      std::string out_file = absl::StrCat("/tmp/caseway-bench-flood-", getpid(), ".out");
      posix_spawn_file_actions_t actions;
      posix_spawn_file_actions_init(&actions);
      posix_spawn_file_actions_addopen(&actions, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
      pid_t child = 0;
      if (posix_spawn(&child, "/proc/self/exe", &actions, nullptr, cargs.data(), environ) != 0) {
        perror("posix_spawn");
        return 1;
      }
      posix_spawn_file_actions_destroy(&actions);
      std::this_thread::sleep_for(std::chrono::seconds(2));  // let the flood build up
      Measure m = MeasureLegit(o, absl::StrCat("flood", ++round));
      kill(child, SIGTERM);
      int status = 0;
      const auto give_up = Clock::now() + std::chrono::seconds(10);
      while (waitpid(child, &status, WNOHANG) == 0) {
        if (Clock::now() > give_up) {
          kill(child, SIGKILL);
          waitpid(child, &status, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      long sent = -1;
      std::ifstream in(out_file);  // (a flooder that had to be killed printed nothing)
      in >> sent;
      unlink(out_file.c_str());
      rows.push_back({floods[f].first, nice, m, sent});
      fprintf(stderr, "%s (nice %d): p99 %.2f ms\n", floods[f].first.c_str(), nice, m.p99);
    }
  }
  std::sort(base_p99.begin(), base_p99.end());
  const double median = base_p99.empty() ? 0 : base_p99[base_p99.size() / 2];
  printf("%-38s %6s %9s %9s %8s %8s %10s %9s\n", "flood", "nice", "p50 ms", "p99 ms",
         "p99/base", "failed", "rss MiB", "sent");
  for (const Row& r : rows) {
    const std::string nice = r.nice < 0 ? "-" : std::to_string(r.nice);
    const std::string sent = r.nice < 0 ? "" : (r.sent >= 0 ? std::to_string(r.sent) : "-");
    const double ratio = median > 0 ? r.m.p99 / median : 0;
    printf("%-38s %6s %9.2f %9.2f %8.2f %8d %10ld %9s\n", r.name.c_str(), nice.c_str(), r.m.p50,
           r.m.p99, ratio, r.m.failed, r.m.peak_rss, sent.c_str());
    printf("JSON {\"bench\":\"flood\",\"flood\":\"%s\",\"flooder_nice\":%d,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"p99_ratio\":%.2f,\"failed\":%d,\"rss_mb\":%ld}\n",
           r.name.c_str(), r.nice, r.m.p50, r.m.p99, ratio, r.m.failed, r.m.peak_rss);
  }
  printf("unloaded p99: median %.2f ms of %zu measurements (one before each flood)\n", median,
         base_p99.size());
  fflush(stdout);
  return 0;
}
