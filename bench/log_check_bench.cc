// caseway-bench-log: what the exchange log's integrity checks cost, measured on a real store
// (SQLite, WAL, synchronous=FULL) in a temporary directory: the check a checkpoint makes before
// it is signed (Checkpointer::CheckBeforeSigning, for N new entries), the same after a restart
// (the tail re-read from its bytes), and the background scrub's speed on one thread
// (NoticeStore::VerifyStored over the whole log). Bounded by --entries.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/digest.h"
#include "common/merkle.h"
#include "common/signing.h"
#include "server/log/checkpointer.h"
#include "server/store/notice_store.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = caseway::v1;
namespace server = caseway::server;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// Publish appends `n` PUBLISHED entries of 1 KiB notices in batches of up to 1,000.
void Publish(server::NoticeStore& store, uint64_t& next_id, uint64_t n) {
  while (n > 0) {
    const uint64_t k = std::min<uint64_t>(n, 1000);
    std::vector<server::PreparedNotice> batch;
    for (uint64_t i = 0; i < k; ++i) {
      v1::Notice notice;
      notice.set_notice_id(absl::StrCat("b-", next_id++));
      notice.set_case_id(std::string(1000, 'c'));
      notice.add_destinations("440305");
      server::PreparedNotice p;
      p.notice_id = notice.notice_id();
      p.destinations = {"440305"};
      p.bytes = notice.SerializeAsString();
      p.digest = caseway::common::Sha256(p.bytes);
      batch.push_back(std::move(p));
    }
    auto r = store.Publish(batch);
    if (!r.ok()) {
      fprintf(stderr, "publish: %s\n", r.status().ToString().c_str());
      exit(1);
    }
    n -= k;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"caseway-bench-log: the cost of the exchange log's integrity checks on a real "
               "store (bench/README.md)"};
  uint64_t entries = 200000;
  std::vector<uint64_t> growths = {1, 100, 1000, 10000};
  int repeats = 20;
  uint64_t restart_tail = 10000;
  app.add_option("--entries", entries, "log size before the measurements")->capture_default_str();
  app.add_option("--growth", growths, "new entries per checkpoint to measure")->capture_default_str();
  app.add_option("--repeats", repeats, "checkpoints measured per growth")->capture_default_str();
  app.add_option("--restart-tail", restart_tail, "uncheckpointed entries left before a restart")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const std::string dir = std::filesystem::temp_directory_path() /
                          absl::StrCat("caseway-bench-log-", getpid());
  std::filesystem::create_directories(dir);
  auto key = caseway::common::SigningKey::Generate();
  server::StoreOptions options;
  options.path = dir + "/node.db";
  options.self = "360102";
  auto opened = server::NoticeStore::Open(options);
  if (!opened.ok()) {
    fprintf(stderr, "%s\n", opened.status().ToString().c_str());
    return 1;
  }
  server::NoticeStore& store = **opened;
  auto checkpointer =
      std::make_unique<server::Checkpointer>(&store, caseway::common::Signatures(key, nullptr),
                                              "bench/node/360102", "360102", absl::Seconds(1));
  uint64_t next_id = 0;
  Publish(store, next_id, entries);
  if (!checkpointer->SignNow().ok()) return 1;

  printf("log of %llu entries (1 KiB notices)\n", static_cast<unsigned long long>(entries));
  printf("%-28s %10s %10s %10s %12s\n", "checkpoint covering", "p50 ms", "p99 ms", "max ms",
         "us/entry");
  for (uint64_t growth : growths) {
    std::vector<double> verify_ms;
    for (int r = 0; r < repeats; ++r) {
      Publish(store, next_id, growth);
      // The part of SignNow that checks what the checkpoint newly covers, timed on its own.
      auto last = store.LatestCheckpoint();
      const auto [size, root] = store.LogHead();
      const auto t0 = Clock::now();
      absl::Status s = checkpointer->CheckBeforeSigning(last->size, last->root, size, root).status();
      verify_ms.push_back(Ms(Clock::now() - t0));
      if (!s.ok() || !checkpointer->SignNow().ok()) {
        fprintf(stderr, "check failed: %s\n", s.ToString().c_str());
        return 1;
      }
    }
    const double p50 = Percentile(verify_ms, 0.5);
    printf("%-28s %10.3f %10.3f %10.3f %12.2f\n",
           absl::StrCat(growth, " new entries").c_str(), p50, Percentile(verify_ms, 0.99),
           Percentile(verify_ms, 1.0), p50 * 1000 / growth);
    printf("JSON {\"bench\":\"presign-check\",\"growth\":%llu,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
           static_cast<unsigned long long>(growth), p50, Percentile(verify_ms, 0.99));
  }
  // A restart: the tail appended before it, never checkpointed, is re-read from its bytes once.
  Publish(store, next_id, restart_tail);
  checkpointer.reset();
  opened->reset();
  opened = server::NoticeStore::Open(options);
  if (!opened.ok()) return 1;
  {
    server::NoticeStore& reopened = **opened;
    server::Checkpointer after(&reopened, caseway::common::Signatures(key, nullptr),
                               "bench/node/360102", "360102", absl::Seconds(1));
    auto last = reopened.LatestCheckpoint();
    const auto [size, root] = reopened.LogHead();
    const auto t0 = Clock::now();
    if (!after.CheckBeforeSigning(last->size, last->root, size, root).ok()) return 1;
    const double ms = Ms(Clock::now() - t0);
    printf("%-28s %10.3f   (once, at start-up)\n",
           absl::StrCat("restart, tail of ", restart_tail).c_str(), ms);
    printf("JSON {\"bench\":\"presign-check-restart\",\"tail\":%llu,\"ms\":%.3f}\n",
           static_cast<unsigned long long>(restart_tail), ms);
  }
  server::NoticeStore& store2 = **opened;
  // The scrub: one pass over the whole log on one thread, as fast as it goes.
  caseway::common::MerkleFrontier frontier;
  const uint64_t size = store2.LogHead().first;
  const auto t0 = Clock::now();
  absl::Status s = store2.VerifyStored(frontier, size);
  const double sec = Ms(Clock::now() - t0) / 1000;
  if (!s.ok()) return 1;
  const double per_s = size / sec;
  printf("scrub: %llu entries in %.2f s = %.0f entries/s on one thread; the default 5,000/s "
         "takes %.1f%% of one core\n",
         static_cast<unsigned long long>(size), sec, per_s, 100.0 * 5000 / per_s);
  printf("JSON {\"bench\":\"scrub\",\"entries_per_s\":%.0f,\"default_core_share\":%.4f}\n", per_s,
         5000 / per_s);
  std::filesystem::remove_all(dir);
  return 0;
}
