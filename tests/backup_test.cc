// Backup and restore with real nodes: `caseway-node backup` while the node exchanges, `caseway-node
// restore` with it stopped, and the start that follows. A node restored from a backup older than
// what its peers hold refuses to start (never numbering a channel again or forking its log);
// one whose peers hold nothing newer starts and gets back from them what it received since.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/config.h"
#include "tests/testing/audited_pair.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

class BackupTest : public AuditedPairTest {
 protected:
  RunResult Backup(NodeProcess& node, const std::string& to) {
    return RunCommand({BinDir() + "/caseway-node", "backup", "--config", node.config_path(), "--to", to});
  }
  RunResult Restore(NodeProcess& node, const std::string& from) {
    return RunCommand(
        {BinDir() + "/caseway-node", "restore", "--config", node.config_path(), "--from", from});
  }
  // Publish sends notices first..last from A to B.
  void Publish(int first, int last) {
    auto client = a_->NewClient();
    for (int i = first; i <= last; ++i) {
      ASSERT_OK(client->Publish(SampleNotice(absl::StrCat("n-", i), {kB})).status());
    }
  }
  // WaitAcked waits until A's channel to B is acknowledged up to `seq`.
  bool WaitAcked(uint64_t seq) {
    return WaitFor([&] {
      auto st = a_->NewClient()->Status();
      return st.ok() && st->channels_size() == 1 && st->channels(0).acked() >= seq;
    }, absl::Seconds(20));
  }
};

// Without the exchange log (so without witnesses): B, the destination, is backed up while A
// publishes to it, receives more, and its machine is lost. Restored from the backup, B asks A,
// which holds nothing of B's newer than the copy; B starts, and A sends again what B had
// received after the backup: B's inbox ends with every notice exactly once.
TEST_F(BackupTest, ADestinationRestoredFromAnOlderBackupGetsBackWhatItReceivedSince) {
  if (TestStoreIsPostgres()) GTEST_SKIP() << "backup and restore copy a SQLite file (on PostgreSQL: pg_dump, docs/operator.md)";
  for (NodeProcess* n : {a_.get(), b_.get()}) n->set_exchange_log_yaml("  disabled: true\n");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  Publish(1, 20);
  ASSERT_TRUE(WaitAcked(20));
  // The backup is taken while A goes on publishing (21..40); 41..60 certainly come after it.
  std::thread more([&] {
    auto client = a_->NewClient();
    for (int i = 21; i <= 40; ++i) {
      EXPECT_OK(client->Publish(SampleNotice(absl::StrCat("n-", i), {kB})).status());
    }
  });
  const std::string backup = dir_.path() + "/b-backup.db";
  RunResult taken = Backup(*b_, backup);
  more.join();
  ASSERT_EQ(taken.exit_code, 0) << taken.err;
  EXPECT_THAT(taken.out, HasSubstr("received from 360102: up to seq"));
  Publish(41, 60);
  ASSERT_TRUE(WaitAcked(60));
  // A second backup never overwrites the first.
  RunResult again = Backup(*b_, backup);
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_THAT(again.err, HasSubstr("exists (a backup never overwrites)"));
  // Restoring over a running node is refused, and changes nothing.
  RunResult busy = Restore(*b_, backup);
  EXPECT_EQ(busy.exit_code, 2);
  EXPECT_THAT(busy.err, HasSubstr("is open in a running process"));
  EXPECT_THAT(busy.err, HasSubstr("stop the node first"));
  EXPECT_EQ(b_->InboxTotal(), 60);

  // B's machine is lost: killed, and its database replaced by the backup.
  b_->Kill();
  RunResult restored = Restore(*b_, backup);
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  EXPECT_THAT(restored.out, HasSubstr("asks every peer what it holds of it"));
  bool kept_aside = false;
  for (const auto& f : std::filesystem::directory_iterator(dir_.path())) {
    kept_aside |= absl::StrContains(f.path().filename().string(), std::string(kB) + ".db.replaced-");
  }
  EXPECT_TRUE(kept_aside) << "the replaced database is kept beside it";
  // (B is stopped: its restored store is inspected.)
  const NodeProcess::StoreSummary copy = b_->Inspect();
  const int64_t in_backup = copy.inbox_total;
  EXPECT_GE(in_backup, 20);
  EXPECT_LE(in_backup, 40);
  EXPECT_TRUE(copy.backup_mark);
  // The copy is consistent: its cursor is its last received notice.
  ASSERT_EQ(copy.cursors.count(kA), 1u);
  EXPECT_EQ(copy.cursors.at(kA), in_backup);
  ASSERT_OK(b_->Start());
  EXPECT_THAT(b_->log(), HasSubstr("restore: every peer confirmed this copy holds all it saw"));
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 60; },
                      absl::Seconds(20)));
  EXPECT_EQ(DistinctNotices(b_->InboxItems()), 60);
  // And the exchange goes on.
  Publish(61, 61);
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 61; },
                      absl::Seconds(20)));
  // The copy is no longer marked as one.
  ASSERT_EQ(b_->Stop(), 0);
  EXPECT_FALSE(b_->Inspect().backup_mark);
}

// With the exchange log: A, the witness, has cosigned B's log beyond the backup. Starting from
// the copy would fork B's log, so B refuses (exit status 2), names A and the sizes, and leaves
// the copy as it was; restoring the newer database (kept aside) lets it start.
TEST_F(BackupTest, ACopyOlderThanWhatAWitnessCosignedIsRefused) {
  if (TestStoreIsPostgres()) GTEST_SKIP() << "backup and restore copy a SQLite file (on PostgreSQL: pg_dump, docs/operator.md)";
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  Publish(1, 5);
  ASSERT_TRUE(WaitAcked(5));
  const std::string backup = dir_.path() + "/b-backup.db";
  RunResult taken = Backup(*b_, backup);
  ASSERT_EQ(taken.exit_code, 0) << taken.err;
  int64_t backup_size = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      taken.out.substr(taken.out.find("exchange log: ") + 14,
                       taken.out.find(" entries") - taken.out.find("exchange log: ") - 14),
      &backup_size))
      << taken.out;
  Publish(6, 10);
  ASSERT_TRUE(WaitAcked(10));
  // A cosigns a checkpoint of B's that holds entries appended after the backup.
  ASSERT_TRUE(WaitFor([&] { return a_->WitnessedSize(kB) > backup_size; }, absl::Seconds(20)));
  const int64_t cosigned = a_->WitnessedSize(kB);
  ASSERT_EQ(b_->Stop(), 0);
  const std::string newer = dir_.path() + "/b-newer.db";
  ASSERT_EQ(Backup(*b_, newer).exit_code, 0);  // a backup of the stopped node works too
  ASSERT_EQ(Restore(*b_, backup).exit_code, 0);
  // (B is stopped: the restored copy is inspected.)
  const int64_t copy_size = b_->Inspect().log_entries;
  ASSERT_LT(copy_size, cosigned);
  absl::Status start = b_->Start();
  ASSERT_FALSE(start.ok());
  EXPECT_THAT(std::string(start.message()), HasSubstr("exited with status 2"));
  EXPECT_THAT(b_->log(), HasSubstr(absl::StrCat("360102 cosigned this node's exchange log at ",
                                                cosigned, " entries")));
  EXPECT_THAT(b_->log(), HasSubstr(absl::StrCat("but this copy holds ", copy_size)));
  EXPECT_THAT(b_->log(), HasSubstr("would number those sequences again or fork the exchange log"));
  // Nothing changed: still the copy, still marked, nothing appended.
  const NodeProcess::StoreSummary after = b_->Inspect();
  EXPECT_EQ(after.log_entries, copy_size);
  EXPECT_TRUE(after.backup_mark);
  // The newer backup holds all A saw: B starts from it, and the audit still reconciles.
  ASSERT_EQ(Restore(*b_, newer).exit_code, 0);
  ASSERT_OK(b_->Start());
  Publish(11, 12);
  ASSERT_TRUE(WaitAcked(12));
  RunResult audit = AuditUntil({"reconcile", a_->address(), b_->address()}, "PROVEN +12 +0 +12");
  EXPECT_EQ(audit.exit_code, 0) << audit.out << audit.err;
  EXPECT_THAT(audit.out, ::testing::ContainsRegex("PROVEN +12 +0 +12"));
}

// A, the origin, restored from a backup taken before notices B has since received: A refuses to
// start rather than number new notices 6.. again. While B is down A cannot ask it, and says so
// (exit status 1, retried); once B answers, A refuses for good (exit status 2).
TEST_F(BackupTest, AnOriginRestoredBehindItsDestinationRefusesToRenumber) {
  if (TestStoreIsPostgres()) GTEST_SKIP() << "backup and restore copy a SQLite file (on PostgreSQL: pg_dump, docs/operator.md)";
  for (NodeProcess* n : {a_.get(), b_.get()}) n->set_exchange_log_yaml("  disabled: true\n");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  Publish(1, 5);
  ASSERT_TRUE(WaitAcked(5));
  const std::string backup = dir_.path() + "/a-backup.db";
  ASSERT_EQ(Backup(*a_, backup).exit_code, 0);
  Publish(6, 9);
  ASSERT_TRUE(WaitAcked(9));
  a_->Kill();
  b_->Kill();
  ASSERT_EQ(Restore(*a_, backup).exit_code, 0);
  absl::Status unreachable = a_->Start();
  ASSERT_FALSE(unreachable.ok());
  EXPECT_THAT(std::string(unreachable.message()), HasSubstr("exited with status 1"));
  EXPECT_THAT(a_->log(), HasSubstr("a restored node starts only once every peer has said what it "
                                   "holds of it, and these did not answer: 440305"));
  ASSERT_OK(b_->Start());
  absl::Status refused = a_->Start();
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.message()), HasSubstr("exited with status 2"));
  EXPECT_THAT(a_->log(), HasSubstr("440305 has stored this node's channel up to seq 9, but this "
                                   "copy ends at 5: notices 6..9 were published after the backup"));
  const NodeProcess::StoreSummary stopped = a_->Inspect();  // A never started: inspected
  ASSERT_EQ(stopped.channels.count(kB), 1u);
  EXPECT_EQ(stopped.channels.at(kB).first, 5);
}

// `caseway-node inspect` reads a running node's store as well as a stopped one's, agrees with
// what the node's RPCs say, and names a store it cannot read instead of printing zeros.
TEST_F(BackupTest, InspectReadsARunningNodesStoreAndNamesOneItCannotRead) {
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  Publish(1, 3);
  ASSERT_TRUE(WaitAcked(3));
  ASSERT_TRUE(WaitFor([&] { return b_->Cursor(kA) == 3; }, absl::Seconds(10)));
  const NodeProcess::StoreSummary a = a_->Inspect();
  EXPECT_EQ(a.notices_published, 3);
  EXPECT_EQ(a.notices_published, a_->Published());
  ASSERT_EQ(a.channels.count(kB), 1u);
  EXPECT_EQ(a.channels.at(kB), std::make_pair(int64_t{3}, int64_t{3}));
  EXPECT_FALSE(a.backup_mark);
  EXPECT_GT(a.log_entries, 0);
  EXPECT_LE(a.log_entries, a_->LogSize()) << "the log only grows";
  const NodeProcess::StoreSummary b = b_->Inspect();
  EXPECT_EQ(b.inbox_total, 3);
  EXPECT_EQ(b.inbox_unacked, 3);
  EXPECT_EQ(b.cursors, (std::map<std::string, int64_t>{{kA, 3}}));
  // The text form says the same to an operator.
  RunResult text = RunCommand({BinDir() + "/caseway-node", "inspect", "--config", a_->config_path()});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("notices published here: 3"));
  EXPECT_THAT(text.out, HasSubstr("channel to 440305: up to seq 3, acknowledged up to 3"));
  if (a_->on_postgres()) return;  // the rest names SQLite files
  // A configuration whose storage.path is no database, or nothing at all.
  std::string config = common::ReadFile(a_->config_path()).value();
  const std::string junk = dir_.path() + "/junk.db";
  std::ofstream(junk) << "not a database, but long enough to be read as one's first page\n";
  const std::string wrong = dir_.path() + "/wrong.yaml";
  std::ofstream(wrong) << absl::StrReplaceAll(config, {{a_->db_path(), junk}});
  RunResult foreign = RunCommand({BinDir() + "/caseway-node", "inspect", "--config", wrong});
  EXPECT_EQ(foreign.exit_code, 2) << foreign.out << foreign.err;
  EXPECT_THAT(foreign.err, HasSubstr("not a Caseway store"));
  std::ofstream(wrong) << absl::StrReplaceAll(config, {{a_->db_path(), dir_.path() + "/none.db"}});
  RunResult missing = RunCommand({BinDir() + "/caseway-node", "inspect", "--config", wrong});
  EXPECT_EQ(missing.exit_code, 2) << missing.out << missing.err;
  EXPECT_THAT(missing.err, HasSubstr("storage.path: " + dir_.path() + "/none.db does not exist"));
}

}  // namespace
}  // namespace caseway::testing
