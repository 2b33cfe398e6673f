// The provable exchange through real nodes and the real `caseway audit` CLI: signed batches and
// receipts, checkpoints, witnessing, tamper and fork detection, and reconciliation statuses.
#include <gtest/gtest.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "caseway/v1/exchange_log.pb.h"
#include "tests/testing/audited_pair.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class AuditTest : public AuditedPairTest {
 protected:
  RunResult VerifyBundle(const std::string& path) {
    return RunCommand({BinDir() + "/caseway", "audit", "verify-bundle", path, "--directory",
                       pki_->dir() + "/directory.yaml"});
  }

  std::vector<std::string> Bundles() {
    std::vector<std::string> out;
    if (!fs::exists(dir_.path() + "/bundles")) return out;
    for (const auto& e : fs::directory_iterator(dir_.path() + "/bundles")) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
  }

  // Published publishes one notice and waits until B has stored it (one batch per notice).
  void PublishOne(client::Client& a, const std::string& id, int64_t expect_inbox) {
    ASSERT_OK(a.Publish(SampleNotice(id, {kB})));
    ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() >= expect_inbox; },
                        absl::Seconds(15)))
        << b_->log();
  }

  // DeliverASecondBatchWith starts both nodes, A with the test faults `faults` on seq 2, and
  // publishes two notices one batch each: the first is stored at B, and B refuses the second.
  void DeliverASecondBatchWith(const std::string& faults) {
    a_->set_env("CASEWAY_FAULTS=" + faults);
    ASSERT_OK(a_->Start());
    ASSERT_OK(b_->Start());
    auto a = a_->NewClient();
    PublishOne(*a, "first", 1);
    ASSERT_OK(a->Publish(SampleNotice("second", {kB})));
    ASSERT_TRUE(WaitFor([&] { return b_->log().find("batch refused") != std::string::npos; },
                        absl::Seconds(10)));
  }

  // Settled waits until both nodes have signed a checkpoint covering every event logged so far.
  void Settled() {
    for (NodeProcess* n : {a_.get(), b_.get()}) {
      int64_t size = EventsSize(*n);
      ASSERT_TRUE(WaitFor([&] { return n->CheckpointSize() >= size; }, absl::Seconds(15)))
          << n->jurisdiction() << ": no checkpoint covers " << size << " entries";
    }
  }

};

TEST_F(AuditTest, HealthyExchangeIsProvenBothWaysAndCheckpointsAreCosigned) {
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  auto b = b_->NewClient();
  std::vector<v1::Notice> batch;
  for (int i = 0; i < 20; ++i) batch.push_back(SampleNotice(absl::StrCat("h-", i), {kB}));
  ASSERT_OK(a->PublishBatch(batch));
  ASSERT_OK(b->Publish(SampleNotice("back-1", {kA})));
  ASSERT_TRUE(WaitFor([&] {
    return a_->Acked("440305") == 20 &&
           b_->Acked("360102") == 1;
  }, absl::Seconds(15)));
  Settled();
  // Witnessing: each node's latest checkpoint gets the other's cosignature, and then the two
  // settle (witness records alone do not make new checkpoints at once).
  ASSERT_TRUE(WaitFor([&] { return a_->Cosigners(kB) == 1 && b_->Cosigners(kA) == 1; },
                      absl::Seconds(10)));
  EXPECT_GT(a_->WitnessedSize(kB), 0);
  RunResult r = Audit({"reconcile", a_->address(), b_->address()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("cosigned by: 440305"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("PROVEN +20 +1 +21"));
  EXPECT_THAT(r.out, HasSubstr("OK: every exchange matched"));
  // One notice's evidence, at the origin and at the destination.
  for (auto [node, extra] : {std::pair<NodeProcess*, std::string>{a_.get(), ""},
                             {b_.get(), "360102"}}) {
    std::vector<std::string> args = {"evidence", node->address(), "h-7"};
    if (!extra.empty()) {
      args.push_back("--origin");
      args.push_back(extra);
    }
    RunResult ev = Audit(args);
    EXPECT_EQ(ev.exit_code, 0) << ev.out << ev.err;
    EXPECT_THAT(ev.out, HasSubstr("channel 360102 -> 440305, seq 8"));
    EXPECT_THAT(ev.out, HasSubstr("ok  manifest"));
    EXPECT_THAT(ev.out, HasSubstr("signed by 360102, holds this notice's digest"));
    EXPECT_THAT(ev.out, HasSubstr("ok  receipt"));
    EXPECT_THAT(ev.out, HasSubstr("OK: every signature and digest verifies"));
  }
  EXPECT_EQ(Audit({"evidence", a_->address(), "no-such-notice"}).exit_code, 1);
  // Receipts never verify as batch signatures and vice versa: each evidence row by its context.
  EXPECT_EQ(a_->Evidence(v1::Evidence::KIND_RECEIPT_RECEIVED, kB).size(),
            a_->Evidence(v1::Evidence::KIND_MANIFEST_SENT, kB).size());
}

TEST_F(AuditTest, TamperedEntryIsReportedAsCorruptLogNamingIt) {
  // The auditor's finding is under test: A's own scrub would halt it first on a slow machine.
  a_->set_exchange_log_yaml("  scrub_rate: 0\n");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  for (int i = 0; i < 5; ++i) ASSERT_OK(a->Publish(SampleNotice(absl::StrCat("t-", i), {kB})));
  Settled();
  RunResult clean = Audit({"verify", a_->address()});
  ASSERT_EQ(clean.exit_code, 0) << clean.out << clean.err;
  a_->Exec("UPDATE log_leaf SET bytes = bytes || " + a_->Bytes("01") + " WHERE idx = 2");
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("LOG_CORRUPT"));
  EXPECT_THAT(r.out, HasSubstr("entry 2 is the first that does not prove into it"));
  auto bundles = Bundles();
  ASSERT_GE(bundles.size(), 1u);
  // Entries are not signed one by one: the offline check verifies the signed checkpoint and that
  // the listed entry does not prove into it, and says that the serving is the auditor's
  // observation instead of vouching for it.
  RunResult check = VerifyBundle(bundles[0]);
  EXPECT_EQ(check.exit_code, 0) << check.out;
  EXPECT_THAT(check.out, HasSubstr("ok   entry 2 of 360102 does not prove into its signed checkpoint"));
  EXPECT_THAT(check.out, HasSubstr("not provable offline"));
}

TEST_F(AuditTest, TruncatedAndResignedLogIsAFork) {
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  for (int i = 0; i < 6; ++i) ASSERT_OK(a->Publish(SampleNotice(absl::StrCat("f-", i), {kB})));
  Settled();
  RunResult first = Audit({"verify", a_->address()});
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  // B has cosigned A's history up to the audited checkpoint (a witness can only see a fork of a
  // history it saw).
  int64_t audited = a_->CheckpointSize();
  ASSERT_TRUE(WaitFor([&] { return b_->WitnessedSize(kA) >= audited; }, absl::Seconds(10)));
  // The operator stops A, cuts its log back to 3 entries with its checkpoints, and restarts it.
  a_->Stop();
  a_->Exec("DELETE FROM log_leaf WHERE idx >= 3; DELETE FROM log_node WHERE ((idx + 1) << CAST(level AS INTEGER)) > 3;"
           "DELETE FROM checkpoint; DELETE FROM cosignature;");
  ASSERT_OK(a_->Start());
  a = a_->NewClient();
  for (int i = 0; i < 30; ++i) ASSERT_OK(a->Publish(SampleNotice(absl::StrCat("g-", i), {kB})));
  Settled();
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("FORK"));
  auto bundles = Bundles();
  ASSERT_EQ(bundles.size(), 1u);
  RunResult check = VerifyBundle(bundles[0]);
  EXPECT_EQ(check.exit_code, 0) << check.out;
  EXPECT_THAT(check.out, ::testing::ContainsRegex("the first [0-9]+ entries of 360102's signed log "
                                                   "of [0-9]+ have another root"));
  // The witness B refuses to cosign the new history.
  EXPECT_TRUE(WaitFor([&] { return b_->log().find("fork: 360102") != std::string::npos; },
                      absl::Seconds(10)))
      << b_->log();
}

// Misbehaving nodes (test faults) and an offline destination produce every reconciliation status.
TEST_F(AuditTest, ReconcileScenarioProducesEveryStatus) {
  a_->set_env("CASEWAY_FAULTS=omit_sent_log=7,equivocate_sent=8");
  b_->set_env("CASEWAY_FAULTS=omit_received_log=3,duplicate_received_log=4,forge_received=5,"
              "drop_receipt=6");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  for (int i = 1; i <= 8; ++i) PublishOne(*a, absl::StrCat("s-", i), i);
  ASSERT_TRUE(WaitFor(
      [&] { return a_->Acked("440305") == 8; },
      absl::Seconds(15)));
  // B stops subscribing to A: what A publishes now stays undelivered.
  b_->Stop();
  b_->ClearPeers();
  ASSERT_OK(b_->Start());
  ASSERT_OK(a->Publish(SampleNotice("late-1", {kB})));
  ASSERT_OK(a->Publish(SampleNotice("late-2", {kB})));
  absl::SleepFor(absl::Milliseconds(1600));  // ages the two above past --grace
  ASSERT_OK(a->Publish(SampleNotice("late-3", {kB})));
  Settled();
  RunResult r = Audit({"reconcile", a_->address(), b_->address(), "--grace", "1500ms"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"PROVEN", "3"}, {"RECEIVER_OMITTED", "1"}, {"DUPLICATE", "1"}, {"UNSUPPORTED", "1"},
      {"MATCHED", "1"}, {"SENDER_OMITTED", "1"}, {"CONFLICT", "1"}, {"UNDELIVERED", "2"},
      {"PENDING", "1"}};
  for (const auto& [status, count] : expected) {
    EXPECT_THAT(r.out, ::testing::ContainsRegex(status + " +" + count + " +0 +" + count))
        << status << "\n" << r.out;
  }
  EXPECT_THAT(r.out, ::testing::ContainsRegex("RECEIVER_OMITTED +360102->440305 seq 3 "));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("CONFLICT +360102->440305 seq 8 +s-8"));
  // Every bundle checks out offline.
  auto bundles = Bundles();
  EXPECT_EQ(bundles.size(), 7u) << "one per finding (PENDING, MATCHED and PROVEN are not)";
  for (const auto& path : bundles) {
    RunResult check = VerifyBundle(path);
    EXPECT_EQ(check.exit_code, 0) << path << "\n" << check.out;
  }
}

TEST_F(AuditTest, HowOldAnUndeliveredNoticeIsCountsOnTheOriginsOwnClock) {
  // A runs two days ahead; B does not subscribe to it, so nothing A publishes is sent.
  a_->SetClockOffset(absl::Hours(48));
  b_->ClearPeers();
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  ASSERT_OK(a->Publish(SampleNotice("old", {kB})));
  a_->SetClockOffset(absl::Hours(49));  // an hour passes, on A's clock
  ASSERT_OK(a->Publish(SampleNotice("fresh", {kB})));
  Settled();
  // By the auditor's clock both look two days in the future: both would stay PENDING for two
  // days. By A's, "old" is an hour old.
  RunResult r = Audit({"reconcile", a_->address(), b_->address(), "--grace", "30m"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, ::testing::ContainsRegex(
                         "UNDELIVERED +360102->440305 seq 0 +old +published 1h(0m[0-9]+s)? ago by "
                         "360102's clock, never sent"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("UNDELIVERED +1 +0 +1"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("PENDING +1 +0 +1")) << "fresh";
}

TEST_F(AuditTest, KillNineBetweenCommitAndReceiptKeepsTheReceiptedIndex) {
  b_->set_env("CASEWAY_FAULTS=crash_after_receive_commit=3");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  PublishOne(*a, "k-1", 1);
  PublishOne(*a, "k-2", 2);
  ASSERT_OK(a->Publish(SampleNotice("k-3", {kB})));
  ASSERT_TRUE(WaitFor([&] { return b_->Exited(); }, absl::Seconds(15))) << "no crash";
  // (B is down: its store is inspected.)
  EXPECT_EQ(b_->Inspect().inbox_total, 3) << "committed before the crash";
  EXPECT_EQ(a_->Acked("440305"), 2);
  b_->set_env("");
  ASSERT_OK(b_->Start());
  ASSERT_TRUE(WaitFor(
      [&] { return a_->Acked("440305") == 3; },
      absl::Seconds(15)));
  // The receipt A holds names B's one RECEIVED entry for seq 3, committed before the crash.
  std::vector<std::string> receipts;
  for (const auto& e : a_->Evidence(v1::Evidence::KIND_RECEIPT_RECEIVED, kB)) {
    if (e.last_seq() == 3) receipts.push_back(e.signed_().message());
  }
  ASSERT_EQ(receipts.size(), 1u);
  v1::Receipt receipt;
  ASSERT_TRUE(receipt.ParseFromString(receipts[0]));
  int received_for_3 = 0;
  uint64_t index = 0;
  for (const auto& e : b_->LogEntries()) {
    if (e.kind() == v1::LogEntry::KIND_RECEIVED && e.first_seq() <= 3 && e.last_seq() >= 3) {
      ++received_for_3;
      index = e.index();
    }
  }
  EXPECT_EQ(received_for_3, 1);
  EXPECT_EQ(receipt.log_index(), index);
  EXPECT_EQ(b_->InboxTotal(), 3);
}

// The same crash, with a backlog waiting when B comes back: B must still send the stored receipt
// for 3 again, and A record it, before B acknowledges the newer batch (the origin's first message
// on a stream is a heartbeat naming what it holds receipts for).
TEST_F(AuditTest, ReceiptLostInACrashIsSentAgainEvenWithABacklogWaiting) {
  b_->set_env("CASEWAY_FAULTS=crash_after_receive_commit=3");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  PublishOne(*a, "q-1", 1);
  PublishOne(*a, "q-2", 2);
  ASSERT_OK(a->Publish(SampleNotice("q-3", {kB})));
  ASSERT_TRUE(WaitFor([&] { return b_->Exited(); }, absl::Seconds(15))) << "no crash";
  for (int i = 4; i <= 10; ++i) ASSERT_OK(a->Publish(SampleNotice(absl::StrCat("q-", i), {kB})));
  b_->set_env("");
  ASSERT_OK(b_->Start());
  ASSERT_TRUE(WaitFor(
      [&] { return a_->Acked("440305") == 10; },
      absl::Seconds(15)));
  int receipts_for_3 = 0;
  for (const auto& e : a_->Evidence(v1::Evidence::KIND_RECEIPT_RECEIVED, kB)) {
    receipts_for_3 += e.last_seq() == 3;
  }
  EXPECT_EQ(receipts_for_3, 1)
      << "the receipt for the batch ending at 3 is held by A";
  EXPECT_EQ(b_->InboxTotal(), 10);
}

TEST_F(AuditTest, BatchWithABadSignatureOrDigestIsRefusedAndNeverStored) {
  ASSERT_NO_FATAL_FAILURE(DeliverASecondBatchWith("bad_manifest_signature=2,tamper_entry=2"));
  EXPECT_THAT(b_->log(), HasSubstr("batch.manifest.signature: does not verify with the key of 360102"));
  EXPECT_EQ(b_->InboxTotal(), 1);
  EXPECT_EQ(b_->Cursor("360102"), 1);
  EXPECT_EQ(a_->Acked("440305"), 1);
}

// An origin may deliver only its own notices, addressed to the subscriber: a batch holding
// another jurisdiction's notice is refused whole, although the origin's signature on it
// verifies, and the refusal shows in the subscriber's Status.
TEST_F(AuditTest, ABatchHoldingAnotherJurisdictionsNoticeIsRefusedAndNeverStored) {
  ASSERT_NO_FATAL_FAILURE(DeliverASecondBatchWith("foreign_entry=2"));
  EXPECT_THAT(b_->log(), HasSubstr("batch.entries[0].notice.origin: "));
  EXPECT_THAT(b_->log(), HasSubstr("110101\\\" is not the sending peer 360102"));
  auto status = b_->NewClient()->Status();
  ASSERT_OK(status);
  ASSERT_EQ(status->subscriptions_size(), 1);
  EXPECT_EQ(status->subscriptions(0).cursor(), 1u);
  EXPECT_GE(status->subscriptions(0).refused_batches().count("PERMISSION_DENIED"), 1u)
      << status->DebugString();
  EXPECT_EQ(status->inbox_total(), 1u);
  EXPECT_EQ(a_->Acked("440305"), 1);
}

}  // namespace
}  // namespace caseway::testing
