// The tamper matrix: for each way an operator can edit a stopped node's database, what the node
// does on restart, what its peer's witness reports, and what `caseway audit verify`,
// `reconcile` and `verify-bundle` report. Real nodes, real mutual TLS, real SQLite files.
#include <gtest/gtest.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "caseway/v1/exchange_log.grpc.pb.h"
#include "common/config.h"
#include "common/tls.h"
#include <grpcpp/grpcpp.h>
#include "common/digest.h"
#include "common/merkle.h"
#include "common/signing.h"
#include "common/proto_bytes.h"
#include "tests/testing/audited_pair.h"
#include "common/refusal.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

class TamperTest : public AuditedPairTest {
 protected:
  void SetUp() override {
    AuditedPairTest::SetUp();
    // A fast scrub, so that a restarted node has re-checked its whole log within a second.
    a_->set_exchange_log_yaml("  scrub_rate: 1000000\n");
    b_->set_exchange_log_yaml("  scrub_rate: 1000000\n");
  }

  // VerifyBundles runs verify-bundle on every bundle whose name starts with `prefix`, expects it
  // to pass, and returns their combined output (empty when there is none).
  std::string VerifyBundles(const std::string& prefix) {
    std::string out;
    if (!fs::exists(dir_.path() + "/bundles")) return out;
    for (const auto& e : fs::directory_iterator(dir_.path() + "/bundles")) {
      if (e.path().filename().string().rfind(prefix, 0) != 0) continue;
      RunResult r = RunCommand({BinDir() + "/caseway", "audit", "verify-bundle", e.path(),
                                "--directory", pki_->dir() + "/directory.yaml"});
      EXPECT_EQ(r.exit_code, 0) << e.path() << "\n" << r.out << r.err;
      out += r.out;
    }
    return out;
  }

  // Exchange publishes `n` notices A -> B in separate batches and one B -> A, waits until all are
  // receipted, checkpointed and cosigned, and verifies both logs once (the auditor's state).
  void Exchange(int n) {
    ASSERT_OK(a_->Start());
    ASSERT_OK(b_->Start());
    auto a = a_->NewClient();
    auto b = b_->NewClient();
    for (int i = 1; i <= n; ++i) {
      ASSERT_OK(a->Publish(SampleNotice(absl::StrCat("n-", i), {kB})));
      ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() >= i; },
                          absl::Seconds(15)));
    }
    ASSERT_OK(b->Publish(SampleNotice("back-1", {kA})));
    ASSERT_TRUE(WaitFor(
        [&] {
          return a_->Acked("440305") == n &&
                 b_->Acked("360102") == 1;
        },
        absl::Seconds(15)));
    for (NodeProcess* node : {a_.get(), b_.get()}) {
      int64_t events = EventsSize(*node);
      ASSERT_TRUE(WaitFor(
          [&] { return node->CheckpointSize() >= events; },
          absl::Seconds(15)));
    }
    ASSERT_TRUE(WaitFor([&] { return a_->Cosigners(kB) == 1 && b_->Cosigners(kA) == 1; },
                        absl::Seconds(10)));
    for (NodeProcess* node : {a_.get(), b_.get()}) {
      RunResult r = Audit({"verify", node->address()});
      ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    }
  }


  // IndexOf returns the index of A's first entry of `kind`.
  static int64_t IndexOf(NodeProcess& n, v1::LogEntry::Kind kind) {
    int64_t i = 0;
    for (const auto& bytes : n.LogBytes()) {
      v1::LogEntry e;
      if (e.ParseFromString(bytes) && e.kind() == kind) return i;
      ++i;
    }
    return -1;
  }

  // ExpectHalted checks the node's side of a halt: the reason in its log and status, publishing
  // refused, and the peer's witness reporting it.
  void ExpectHalted(NodeProcess& node, NodeProcess& peer, const std::string& reason) {
    ASSERT_TRUE(WaitFor([&] { return node.log().find("exchange halted") != std::string::npos; },
                        absl::Seconds(10)))
        << node.log();
    EXPECT_THAT(node.log(), HasSubstr(reason));
    RunResult status = RunCommand([&] {
      std::vector<std::string> argv = {BinDir() + "/caseway", "status"};
      for (auto& f : node.CliFlags()) argv.push_back(f);
      return argv;
    }());
    EXPECT_EQ(status.exit_code, 1) << status.out << status.err;
    EXPECT_THAT(status.out, HasSubstr("HALTED: exchange halted"));
    auto client = node.NewClient();
    absl::Status refused =
        client->Publish(SampleNotice("after-halt", {peer.jurisdiction()})).status();
    EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
    EXPECT_EQ(common::ReasonOf(refused), "NODE_HALTED") << refused;
    EXPECT_TRUE(WaitFor(
        [&] {
          return peer.log().find(absl::StrCat("halted: ", node.jurisdiction())) != std::string::npos;
        },
        absl::Seconds(10)))
        << peer.log();
  }

};

// Row: entry bytes changed, stored hashes left as they were.
TEST_F(TamperTest, EntryBytes) {
  Exchange(4);
  const int64_t idx = IndexOf(*a_, v1::LogEntry::KIND_SENT);
  ASSERT_GT(idx, 0);
  a_->Stop();
  a_->Exec(absl::StrCat("UPDATE log_leaf SET bytes = bytes || ", a_->Bytes("01"), " WHERE idx = ", idx));
  ASSERT_OK(a_->Start());
  // Node: the scrub finds the entry; the node halts. Witness: reports the halt.
  ExpectHalted(*a_, *b_, absl::StrCat("entry ", idx));
  // verify: HALTED and LOG_CORRUPT naming exactly the edited entry, not all of them.
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("HALTED"));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("entry ", idx, " is the first that does not prove")));
  // verify-bundle: the signed parts verify; the serving is the auditor's observation.
  EXPECT_THAT(VerifyBundles("log_corrupt"), HasSubstr("not provable offline"));
  // reconcile: the corrupt log is a finding too.
  RunResult rec = Audit({"reconcile", a_->address(), b_->address()});
  EXPECT_EQ(rec.exit_code, 1) << rec.out << rec.err;
  EXPECT_THAT(rec.out, HasSubstr("LOG_CORRUPT"));
}

// Row: an entry's bytes and its leaf hash changed together (nodes above left as they were).
TEST_F(TamperTest, EntryBytesAndLeafHash) {
  Exchange(4);
  const int64_t idx = IndexOf(*a_, v1::LogEntry::KIND_PUBLISHED);
  ASSERT_GE(idx, 0);
  const std::vector<std::string> bytes = a_->LogBytes();
  ASSERT_GT(bytes.size(), static_cast<size_t>(idx));
  v1::LogEntry e;
  ASSERT_TRUE(e.ParseFromString(bytes[idx]));
  e.set_notice_id("rewritten");
  const std::string changed = common::DeterministicBytes(e);
  a_->Stop();
  a_->Exec(absl::StrCat("UPDATE log_leaf SET bytes = ", a_->Bytes(common::ToHex(changed)),
                        ", hash = ", a_->Bytes(common::ToHex(common::LeafHash(changed))),
                        " WHERE idx = ", idx));
  ASSERT_OK(a_->Start());
  // Found by the stored node of its 8 entries or by the root of a checkpoint signed at a size
  // within them, whichever the check reaches first (levels 1 and 2 are not stored).
  ExpectHalted(*a_, *b_, "exchange log: ");
  EXPECT_THAT(a_->log(), ::testing::ContainsRegex(
                             "does not match the entries below it|do not rebuild the root of the "
                             "checkpoint signed for that size"));
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("LOG_CORRUPT"));
  EXPECT_THAT(r.out, HasSubstr("HALTED"));
  VerifyBundles("");
}

// Row: the log cut back, its checkpoints kept.
TEST_F(TamperTest, Truncation) {
  Exchange(4);
  a_->Stop();
  const int64_t size = a_->Inspect().log_entries;
  a_->Exec(absl::StrCat("DELETE FROM log_leaf WHERE idx >= ", size - 3,
                        "; DELETE FROM log_node WHERE ((idx + 1) << CAST(level AS INTEGER)) > ", size - 3, ";"));
  ASSERT_OK(a_->Start());
  // Node: refuses to sign a log shorter than its checkpoint, and halts.
  ExpectHalted(*a_, *b_, "but a checkpoint of");
  // verify: TRUNCATED as a finding (exit 1), never "could not run" (exit 2).
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("TRUNCATED"));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("serves only ", size - 3)));
  EXPECT_THAT(VerifyBundles("truncated"), HasSubstr("not provable offline"));
}

// Row: history rewritten and re-hashed consistently (leaves and nodes), checkpoints kept.
TEST_F(TamperTest, RewrittenAndRehashedHistory) {
  Exchange(4);
  const int64_t idx = IndexOf(*a_, v1::LogEntry::KIND_RECEIPT_RECEIVED);
  ASSERT_GT(idx, 0);
  a_->Stop();
  // Rebuild every hash from the rewritten entries, as a careful attacker would (A is stopped:
  // its store is read directly).
  auto leaves = a_->Blobs("SELECT bytes FROM log_leaf ORDER BY idx");
  v1::LogEntry e;
  ASSERT_TRUE(e.ParseFromString(leaves[idx]));
  e.set_peer_log_index(e.peer_log_index() + 1000);
  leaves[idx] = common::DeterministicBytes(e);
  std::string sql = "BEGIN; DELETE FROM log_node;";
  common::MerkleFrontier frontier;
  for (size_t i = 0; i < leaves.size(); ++i) {
    const std::string leaf = common::LeafHash(leaves[i]);
    absl::StrAppend(&sql, "UPDATE log_leaf SET bytes = ", a_->Bytes(common::ToHex(leaves[i])),
                    ", hash = ", a_->Bytes(common::ToHex(leaf)), " WHERE idx = ", i, ";");
    frontier.Append(leaf, [&](int level, uint64_t index, const std::string& hash) {
      absl::StrAppend(&sql, "INSERT INTO log_node(level, idx, hash) VALUES(", level, ", ", index,
                      ", ", a_->Bytes(common::ToHex(hash)), ");");
    });
  }
  sql += "COMMIT;";
  a_->Exec(sql);
  ASSERT_OK(a_->Start());
  // Node: its stored hashes no longer rebuild its own signed checkpoint.
  ExpectHalted(*a_, *b_, "signed checkpoint");
  // verify: one LOG_CORRUPT finding naming the edited entry (the auditor's saved checkpoint bounds
  // what the node's rewritten proofs could blame), with a bundle verify-bundle accepts.
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("LOG_CORRUPT"));
  EXPECT_THAT(r.out, Not(HasSubstr("FORK")));
  VerifyBundles("");
}

// Row: every checkpoint and cosignature removed. Nothing is lost: the node signs again over the
// same history, the witness gives its cosignature again, and audits find nothing.
TEST_F(TamperTest, RemovedCheckpoints) {
  Exchange(3);
  a_->Stop();
  a_->Exec("DELETE FROM checkpoint; DELETE FROM cosignature;");
  ASSERT_OK(a_->Start());
  ASSERT_TRUE(WaitFor([&] { return a_->Cosigners(kB) == 1; }, absl::Seconds(15))) << a_->log();
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("cosigned by: 440305"));
  EXPECT_THAT(a_->log(), Not(HasSubstr("exchange halted")));
}

// Row: the origin's stored notice bytes changed.
TEST_F(TamperTest, NoticeBytesAtTheOrigin) {
  Exchange(3);
  a_->Stop();
  a_->Exec("UPDATE notice SET bytes = bytes || " + a_->Bytes("00") + " WHERE notice_id = 'n-2'");
  ASSERT_OK(a_->Start());
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("NOTICE_BYTES"));
  EXPECT_THAT(r.out, HasSubstr("the first is seq 2"));
  EXPECT_THAT(VerifyBundles("notice_bytes"), HasSubstr("is not the digest of the bytes"));
  // `audit evidence` blames the bytes, not the valid manifest that holds the original digest.
  RunResult ev = Audit({"evidence", a_->address(), "n-2"});
  EXPECT_EQ(ev.exit_code, 1) << ev.out << ev.err;
  EXPECT_THAT(ev.out, HasSubstr("valid, signed by 360102; but the notice bytes"));
  EXPECT_THAT(ev.out, HasSubstr("ok  receipt"));
}

// Row: the destination's inbox bytes changed.
TEST_F(TamperTest, InboxBytesAtTheDestination) {
  Exchange(3);
  b_->Stop();
  b_->Exec("UPDATE inbox SET bytes = bytes || " + b_->Bytes("00") + " WHERE notice_id = 'n-3'");
  ASSERT_OK(b_->Start());
  RunResult r = Audit({"verify", b_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("NOTICE_BYTES"));
  EXPECT_THAT(r.out, HasSubstr("channel 360102 -> 440305"));
  EXPECT_THAT(VerifyBundles("notice_bytes"), HasSubstr("is not the digest of the bytes"));
}

// Row: a stored cosignature corrupted. The node serves only cosignatures that verify; the witness
// sees its own missing from the latest checkpoint and gives it again (the same checkpoint: a
// restart signs no witness-only checkpoint within a minute of the last one).
TEST_F(TamperTest, Cosignatures) {
  Exchange(3);
  a_->Stop();
  const int64_t size = a_->Inspect().checkpoint_size;
  // Every 'A' of the signed line made a 'B' (the line is bytes: BLOB in SQLite, BYTEA in PostgreSQL).
  const std::string changed_line =
      a_->on_postgres() ? "convert_to(replace(convert_from(line, 'UTF8'), 'A', 'B'), 'UTF8')"
                        : "CAST(replace(CAST(line AS TEXT), 'A', 'B') AS BLOB)";
  a_->Exec(absl::StrCat("UPDATE cosignature SET line = ", changed_line, " WHERE size = ", size));
  ASSERT_OK(a_->Start());
  // Served again once B has given it again (only cosignatures that verify are served).
  ASSERT_TRUE(WaitFor([&] { return a_->Cosigners(kB, size) == 1; }, absl::Seconds(15)))
      << a_->log() << b_->log();
  EXPECT_THAT(a_->log(), HasSubstr("stored cosignature does not verify"));
  EXPECT_EQ(a_->CheckpointSize(), size) << "repaired, not re-signed";
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("cosigned by: 440305"));
}

// Row: a receipt in the origin's evidence altered: reconcile finds it UNSUPPORTED.
TEST_F(TamperTest, Receipts) {
  Exchange(3);
  a_->Stop();
  a_->Exec("UPDATE evidence SET signature = " + a_->Bytes(std::string(128, '0')) +
           " WHERE kind = 4 AND last_seq = 2");
  ASSERT_OK(a_->Start());
  RunResult r = Audit({"reconcile", a_->address(), b_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("UNSUPPORTED +1 +0 +1"));
  EXPECT_THAT(r.out, HasSubstr("whose signature does not verify"));
  VerifyBundles("");
}

// Row: evidence rows removed (a manifest A sent). A's signed log covers the receipt for that
// batch, so the SENT entry was committed long before: SENDER_OMITTED at once, not PENDING for the
// whole --grace.
TEST_F(TamperTest, EvidenceRows) {
  Exchange(3);
  a_->Stop();
  a_->Exec("DELETE FROM evidence WHERE kind = 1 AND last_seq = 3");
  ASSERT_OK(a_->Start());
  RunResult r = Audit({"reconcile", a_->address(), b_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("SENDER_OMITTED +1 +0 +1"));
  EXPECT_THAT(r.out, HasSubstr("without the signed manifest to show for it"));
  EXPECT_THAT(r.out, HasSubstr("already covers the batch's receipt"));
  VerifyBundles("");
}

// The production caseway-node has no fault points: CASEWAY_FAULTS changes nothing, and the binary
// does not even contain the variable's name.
TEST_F(TamperTest, ProductionNodeIgnoresTestFaults) {
  a_->use_production_binary();
  a_->set_env("CASEWAY_FAULTS=omit_sent_log=1,equivocate_sent=1");
  Exchange(1);
  EXPECT_GE(IndexOf(*a_, v1::LogEntry::KIND_SENT), 0) << "SENT logged despite omit_sent_log";
  RunResult rec = Audit({"reconcile", a_->address(), b_->address()});
  EXPECT_EQ(rec.exit_code, 0) << rec.out << rec.err;
  std::string binary = common::ReadFile(BinDir() + "/caseway-node").value_or("");
  ASSERT_FALSE(binary.empty());
  EXPECT_EQ(binary.find("CASEWAY_FAULTS"), std::string::npos);
  EXPECT_NE(common::ReadFile(BinDir() + "/caseway-node-faults").value_or("").find("CASEWAY_FAULTS"),
            std::string::npos);
}

// Idle nodes settle: once exchange stops, witnessing adds a bounded number of entries and
// checkpoints, then nothing.
TEST_F(TamperTest, IdleNodesSettle) {
  for (NodeProcess* n : {a_.get(), b_.get()}) {
    n->set_exchange_log_yaml("  witness_checkpoint_interval: 1s\n");
  }
  Exchange(2);
  // Several witness rounds (300 ms) and witness-only checkpoint intervals (1 s) pass.
  absl::SleepFor(absl::Seconds(5));
  // The log sizes, and the latest checkpoint's signed body (which names its time: a checkpoint
  // signed again over the same size differs), stay as they are.
  auto settled = [](NodeProcess& n) {
    auto c = n.Checkpoint();
    auto note = common::ParseNote(c ? c->note() : "");
    return std::make_pair(n.LogSize(), note.ok() ? note->body : "");
  };
  const auto a_then = settled(*a_), b_then = settled(*b_);
  ASSERT_FALSE(a_then.second.empty());
  ASSERT_FALSE(b_then.second.empty());
  absl::SleepFor(absl::Seconds(4));
  EXPECT_EQ(settled(*a_), a_then);
  EXPECT_EQ(settled(*b_), b_then);
}

// A node that exchanges without signing checkpoints is reported stale by its peer's witness and by
// the auditor.
TEST_F(TamperTest, StaleCheckpointIsReported) {
  b_->set_exchange_log_yaml("  stale_checkpoint_after: 10s\n");
  Exchange(1);
  a_->Stop();
  a_->set_exchange_log_yaml("  checkpoint_interval: 1h\n");
  ASSERT_OK(a_->Start());
  auto a = a_->NewClient();
  ASSERT_OK(a->Publish(SampleNotice("late", {kB})));
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 2; },
                      absl::Seconds(15)));
  ASSERT_TRUE(WaitFor([&] { return b_->log().find("stale: 360102") != std::string::npos; },
                      absl::Seconds(25)))
      << b_->log();
  RunResult status = RunCommand([&] {
    std::vector<std::string> argv = {BinDir() + "/caseway", "status"};
    for (auto& f : b_->CliFlags()) argv.push_back(f);
    return argv;
  }());
  EXPECT_THAT(status.out, HasSubstr("witness: stale: 360102"));
  RunResult r = Audit({"verify", a_->address(), "--stale", "10s"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("STALE_CHECKPOINT"));
  VerifyBundles("stale_checkpoint");
}

// GetCheckpoint serves a past checkpoint by size; GetEvidence's last page says next = 0, and a
// peer that is not another node of the federation is an error, not an empty page.
TEST_F(TamperTest, PastCheckpointsAndEvidencePaging) {
  Exchange(3);
  auto creds = common::ChannelCredentials({pki_->ca(), auditor_ + ".crt", auditor_ + ".key"});
  ASSERT_OK(creds.status());
  auto stub = v1::ExchangeLog::NewStub(grpc::CreateChannel(a_->address(), *creds));
  // Two checkpoints at least (a slow machine may have covered the whole exchange with one).
  ASSERT_TRUE(WaitFor([&] { return a_->CheckpointSize() >= 1; }, absl::Seconds(20)));
  const int64_t first = a_->CheckpointSize();
  // An inbound notice: a new event in A's log, under a later checkpoint, that leaves its
  // outbound evidence as it is.
  ASSERT_OK(b_->NewClient()->Publish(SampleNotice("paging-extra", {kA})));
  ASSERT_TRUE(WaitFor([&] { return a_->CheckpointSize() > first; }, absl::Seconds(20)));
  const int64_t latest = a_->CheckpointSize();
  ASSERT_LT(first, latest);
  {
    grpc::ClientContext ctx;
    v1::GetCheckpointRequest req;
    req.set_size(first);
    v1::CheckpointResponse resp;
    ASSERT_TRUE(stub->GetCheckpoint(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.size(), static_cast<uint64_t>(first));
    EXPECT_GE(resp.log_size(), static_cast<uint64_t>(latest));
    EXPECT_TRUE(resp.halted().empty());
    EXPECT_NE(resp.note().find("\ntime "), std::string::npos) << resp.note();
  }
  {
    grpc::ClientContext ctx;
    v1::GetCheckpointRequest req;
    req.set_size(latest + 1000);
    v1::CheckpointResponse resp;
    EXPECT_EQ(stub->GetCheckpoint(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    v1::GetEvidenceRequest req;
    req.set_peer(kB);
    req.set_direction(v1::GetEvidenceRequest::DIRECTION_OUTBOUND);
    v1::GetEvidenceResponse resp;
    ASSERT_TRUE(stub->GetEvidence(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.evidence_size(), 6) << "three manifests, three receipts";
    EXPECT_EQ(resp.next(), 0u) << "the last page";
  }
  for (const std::string peer : {"999999", kA, ""}) {
    grpc::ClientContext ctx;
    v1::GetEvidenceRequest req;
    req.set_peer(peer);
    req.set_direction(v1::GetEvidenceRequest::DIRECTION_INBOUND);
    v1::GetEvidenceResponse resp;
    EXPECT_EQ(stub->GetEvidence(&ctx, req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << peer;
  }
}

// Row: an entry of the tail that no checkpoint covered yet (the node was killed before signing
// one), edited while the node was down. With the scrub off, the check before the first checkpoint
// after the restart re-reads that tail from its bytes and halts the node. (B is never started.)
TEST_F(TamperTest, UncheckpointedTailIsReReadAtStartUp) {
  a_->set_exchange_log_yaml("  scrub_rate: 0\n  checkpoint_interval: 1h\n");
  ASSERT_OK(a_->Start());
  auto a = a_->NewClient();
  for (int i = 1; i <= 3; ++i) ASSERT_OK(a->Publish(SampleNotice(absl::StrCat("t-", i), {kB})));
  a_->Kill();
  // At most the start-up entries (the policy and the signing key, indexes 0 and 1) are under a
  // checkpoint, signed at start-up.
  const NodeProcess::StoreSummary killed = a_->Inspect();
  ASSERT_LE(killed.checkpoint_size, 2);
  ASSERT_EQ(killed.log_entries, 5);  // those two and three notices
  a_->Exec("UPDATE log_leaf SET bytes = bytes || " + a_->Bytes("01") + " WHERE idx = 2");
  ASSERT_OK(a_->Start());
  ASSERT_TRUE(WaitFor([&] { return a_->log().find("exchange halted") != std::string::npos; },
                      absl::Seconds(10)))
      << a_->log();
  EXPECT_THAT(a_->log(), HasSubstr("entry 2"));
  EXPECT_LE(a_->CheckpointSize(), 2) << "nothing signed over it";
  a = a_->NewClient();
  EXPECT_EQ(a->Publish(SampleNotice("t-4", {kB})).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace caseway::testing
