// Storage faults below SQLite (tests/fault_shim, LD_PRELOAD into the origin node): a failed
// fsync that drops the pages it could not write, once and repeatedly, ENOSPC, and short writes,
// while readers hold snapshots (as `sqlite3 .backup` does) so that checkpoints copy the WAL in
// part without a sync. After each: the node stopped rather than reuse the WAL (exit status 75
// for a failed checkpoint), restarts, and every acknowledged notice is stored exactly once,
// delivered exactly once, and the exchange reconciles as proven.
#include <sqlite3.h>

#include <atomic>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/testing/audited_pair.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

constexpr int kBatches = 30;
constexpr int kBatch = 40;
constexpr int kStorageFaultExit = 75;  // server/store/notice_store.h

struct FaultCase {
  const char* mode;
  bool stops;  // a failed checkpoint stops the node
};
void PrintTo(const FaultCase& c, std::ostream* os) { *os << c.mode; }

class StorageFaultTest : public AuditedPairTest,
                         public ::testing::WithParamInterface<FaultCase> {
 protected:
  std::vector<v1::Notice> Batch(int b) {
    std::vector<v1::Notice> batch;
    for (int i = 0; i < kBatch; ++i) {
      batch.push_back(SampleNotice(absl::StrCat("sf-", b, "-", i), {kB}));
    }
    return batch;
  }

  // PublishUntilAcked retries batch `b` with the same ids until A acknowledges it, restarting A
  // when it has stopped (and the fault is over). False when that takes too long.
  bool PublishUntilAcked(int b, bool fault_active) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      if (a_->Exited()) {
        stops_.push_back(a_->exit_status());
        if (fault_active) return false;  // the caller ends the fault first
        if (!a_->Start().ok()) return false;
      }
      auto result = a_->NewClient()->PublishBatch(Batch(b));
      if (result.ok()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  std::vector<int> stops_;
};

TEST_P(StorageFaultTest, AcknowledgedNoticesSurviveExactlyOnceAndTheLogReconciles) {
  if (TestStoreIsPostgres()) GTEST_SKIP() << "disk faults in the SQLite files (a lost PostgreSQL connection: WriterLeaseTest, FailoverTest)";
  const FaultCase fault = GetParam();
  const std::string trigger = dir_.path() + "/fault-on";
  a_->add_env(absl::StrCat("LD_PRELOAD=", BinDir(), "/libcaseway_storage_fault_shim.so"));
  a_->add_env(absl::StrCat("CASEWAY_SHIM_MODE=", fault.mode));
  a_->add_env(absl::StrCat("CASEWAY_SHIM_TRIGGER=", trigger));
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());

  int b = 0;
  for (; b < kBatches / 3; ++b) ASSERT_TRUE(PublishUntilAcked(b, false)) << b;

  // The fault phase: readers take snapshot after snapshot (each pins the WAL, so checkpoints copy
  // it in part, without syncing the database file) while the publisher goes on.
  std::atomic<bool> stop_readers{false};
  std::thread readers([&] {
    while (!stop_readers) {
      sqlite3* db = nullptr;
      if (sqlite3_open_v2(a_->db_path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
        sqlite3_exec(db, "BEGIN; SELECT count(*) FROM notice;", nullptr, nullptr, nullptr);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        sqlite3_exec(db, "COMMIT;", nullptr, nullptr, nullptr);
      }
      sqlite3_close(db);
    }
  });
  { std::ofstream(trigger) << "on\n"; }
  const absl::Time fault_end = absl::Now() + absl::Seconds(4);
  while (absl::Now() < fault_end && b < 2 * kBatches / 3 && !a_->Exited()) {
    if (PublishUntilAcked(b, true)) ++b;
  }
  stop_readers = true;
  readers.join();
  // Give the checkpoint loop (every 500 ms) its chance at the whole WAL, under the fault.
  WaitFor([&] { return a_->Exited(); }, absl::Seconds(fault.stops ? 20 : 3));
  std::remove(trigger.c_str());
  if (a_->Exited() && a_->exit_status() != -1) stops_.push_back(a_->exit_status());
  std::ifstream hits_file(trigger + ".hits");
  std::string hits((std::istreambuf_iterator<char>(hits_file)), {});
  EXPECT_FALSE(hits.empty()) << "the shim injected no fault";
  if (fault.stops) {
    EXPECT_FALSE(stops_.empty()) << "the node went on after a failed checkpoint";
    if (!stops_.empty()) {
      EXPECT_EQ(stops_.front(), kStorageFaultExit) << a_->log();
    }
    EXPECT_THAT(a_->log(), HasSubstr("storage fault"));
  }

  // Recovery: a restart (after the fault stopped the node, or by the operator) recovers from
  // the WAL; then the rest is published.
  if (a_->running()) a_->Stop();
  ASSERT_OK(a_->Start()) << a_->log();
  for (; b < kBatches; ++b) ASSERT_TRUE(PublishUntilAcked(b, false)) << b << a_->log();
  const int64_t total = int64_t{kBatches} * kBatch;
  EXPECT_EQ(a_->Published(), total);
  std::set<std::string> ids;
  for (const auto& e : a_->LogEntries()) {
    if (e.kind() == v1::LogEntry::KIND_PUBLISHED) ids.insert(e.notice_id());
  }
  EXPECT_EQ(static_cast<int64_t>(ids.size()), total);
  EXPECT_EQ(a_->Blobs("PRAGMA integrity_check"), std::vector<std::string>{"ok"});
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() >= total; },
                      absl::Seconds(60)));
  EXPECT_EQ(b_->InboxTotal(), total);
  // Let both logs be checkpointed past the last receipt, then reconcile.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  RunResult r = Audit({"reconcile", a_->address(), b_->address()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("OK: every exchange matched"));
}

INSTANTIATE_TEST_SUITE_P(Faults, StorageFaultTest,
                         ::testing::Values(FaultCase{"eio_once", true},
                                           FaultCase{"eio_always", true},
                                           FaultCase{"enospc", false}, FaultCase{"short", false}),
                         [](const auto& info) { return std::string(info.param.mode); });

}  // namespace
}  // namespace caseway::testing
