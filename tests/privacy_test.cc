// Personal data at rest, through real nodes over mutual TLS: with storage.key_file set, the
// database files hold no name or identity number (grep of the raw files), while every read path
// (delivery to the peer, the inbox, the case timeline, a remote query and its kept answer, the
// auditor's reconcile) sees the plain notices; a database sealed with a key the node does not
// have refuses to open; a rotated key still reads old data, and `caseway-node reseal` retires it.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/refusal.h"
#include "tests/testing/audited_pair.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kIdNumber[] = "11010519491231002X";  // SampleNotice's subject
constexpr char kName[] = "测试人";

// Holds says whether any of the node's database files (the database, its WAL) contains `text`;
// on PostgreSQL, the files of every table of its database and of their TOAST tables, once the
// server has written its buffers to them (CHECKPOINT): as in SQLite's files, a row version an
// update left behind counts too, until a vacuum rewrites the table.
bool Holds(const NodeProcess& node, const std::string& text) {
  std::vector<std::string> files = {node.db_path(), node.db_path() + "-wal"};
  if (node.on_postgres()) {
    node.Exec("CHECKPOINT");
    const std::string data = node.Blobs("SHOW data_directory").at(0);
    files.clear();
    for (const std::string& path :
         node.Blobs("SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.relnamespace = "
                    "current_schema()::regnamespace AND c.relkind = 'r' UNION ALL "
                    "SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c WHERE "
                    "c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' AND "
                    "c.reltoastrelid <> 0")) {
      files.push_back(data + "/" + path);
    }
    EXPECT_GT(files.size(), 10u) << "the tables' files were not found";
  }
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    if (bytes.str().find(text) != std::string::npos) return true;
  }
  return false;
}

class PrivacyTest : public AuditedPairTest {
 protected:
  std::string KeyFile(const NodeProcess& node) const {
    return dir_.path() + "/" + node.jurisdiction() + ".keys";
  }
  // AddKey runs `caseway-node add-key` for the node's key file and returns its output.
  std::string AddKey(const NodeProcess& node) {
    RunResult r = RunCommand({BinDir() + "/caseway-node", "add-key", "--to", KeyFile(node)});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return r.out;
  }
  void Seal(NodeProcess& node) { node.set_storage_yaml("  key_file: " + KeyFile(node) + "\n"); }

  RunResult NodeCommand(std::vector<std::string> args) {
    args.insert(args.begin(), BinDir() + "/caseway-node");
    return RunCommand(args);
  }

  // Subjects returns the identity numbers of a case's notices as `node` shows its timeline.
  std::vector<std::string> Subjects(NodeProcess& node, const std::string& case_id) {
    std::vector<std::string> out;
    auto c = node.NewClient()->Case(case_id);
    EXPECT_TRUE(c.ok()) << c.status();
    if (c.ok()) {
      for (const auto& e : c->events()) out.push_back(e.notice().subject().id_number());
    }
    return out;
  }
};

TEST_F(PrivacyTest, NoNameOrIdentityNumberIsStoredInTheClearAndEveryReadPathSeesThem) {
  EXPECT_THAT(AddKey(*a_), HasSubstr("key 1 added"));
  EXPECT_THAT(AddKey(*b_), HasSubstr("key 1 added"));
  Seal(*a_);
  Seal(*b_);
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  auto b = b_->NewClient();
  for (int i = 0; i < 3; ++i) ASSERT_OK(a->Publish(SampleNotice(absl::StrCat("s-", i), {kB})));
  ASSERT_OK(b->Publish(SampleNotice("back-1", {kA})));
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 3 &&
                                   a_->InboxTotal() == 1; },
                      absl::Seconds(15)));
  // The inbox: B's office reads the three notices as A published them.
  client::InboxOptions take;
  take.ack = true;
  std::vector<std::string> read;
  ASSERT_OK(b->Inbox(take, [&](const v1::InboxItem& item) {
    read.push_back(item.notice().subject().id_number() + " " + item.notice().subject().name());
    return true;
  }));
  EXPECT_EQ(read, std::vector<std::string>(3, absl::StrCat(kIdNumber, " ", kName)));
  // The case timeline, published here and received.
  EXPECT_EQ(Subjects(*a_, "case-s-1"), std::vector<std::string>{kIdNumber});
  EXPECT_EQ(Subjects(*b_, "case-s-1"), std::vector<std::string>{kIdNumber});
  EXPECT_EQ(Subjects(*a_, "case-back-1"), std::vector<std::string>{kIdNumber});
  // A remote query: A answers from its sealed store; B keeps the signed answer sealed.
  v1::QueryPeerRequest ask;
  ask.set_peer(kA);
  ask.set_id_number(kIdNumber);
  auto answer = b->QueryPeer(ask);
  ASSERT_OK(answer);
  ASSERT_EQ(answer->parsed().notices_size(), 4);
  v1::Notice answered;
  ASSERT_TRUE(answered.ParseFromString(answer->parsed().notices(0).notice()));
  EXPECT_EQ(answered.subject().name(), kName);
  // Nothing of it in the clear, at either node, in the database or its WAL.
  for (NodeProcess* node : {a_.get(), b_.get()}) {
    EXPECT_FALSE(Holds(*node, kIdNumber)) << node->jurisdiction();
    EXPECT_FALSE(Holds(*node, kName)) << node->jurisdiction();
    EXPECT_GT(node->Published() + node->InboxTotal(), 0);
  }
  EXPECT_EQ(b_->Evidence(v1::Evidence::KIND_QUERY_ANSWER_RECEIVED, kA).size(), 1u);
  // The auditor reconciles the exchange and the query from the stored evidence, which the nodes
  // serve opened: a sealed answer would not match the digest in A's log.
  RunResult r = AuditUntil({"reconcile", a_->address(), b_->address()}, "OK: every exchange matched");
  EXPECT_THAT(r.out, HasSubstr("OK: every exchange matched")) << r.out << r.err;
  // Without its key, B does not start, and says why.
  b_->Stop();
  b_->set_storage_yaml("");
  absl::Status started = b_->Start();
  EXPECT_THAT(started, StatusIs(absl::StatusCode::kInternal,
                                HasSubstr("personal data here is sealed (encrypted at rest) with key 1")));
}

TEST_F(PrivacyTest, ARotatedKeyStillReadsOldDataAndResealRetiresIt) {
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  // Before encryption: the identity number is in A's file (what the grep finds when it is there).
  ASSERT_OK(a_->NewClient()->Publish(SampleNotice("p-0", {kB})));
  a_->Stop();
  EXPECT_TRUE(Holds(*a_, kIdNumber));
  // Key 1, then key 2: each seals what is published after it.
  EXPECT_THAT(AddKey(*a_), HasSubstr("key 1 added"));
  Seal(*a_);
  ASSERT_OK(a_->Start());
  ASSERT_OK(a_->NewClient()->Publish(SampleNotice("p-1", {kB})));
  a_->Stop();
  EXPECT_THAT(AddKey(*a_), HasSubstr("key 2 added"));
  ASSERT_OK(a_->Start());
  ASSERT_OK(a_->NewClient()->Publish(SampleNotice("p-2", {kB})));
  EXPECT_EQ(a_->Count("SELECT count(*) FROM notice WHERE substr(bytes, 1, 6) = " +
                      a_->Bytes("CF0100000001")),
            1);
  EXPECT_EQ(a_->Count("SELECT count(*) FROM notice WHERE substr(bytes, 1, 6) = " +
                      a_->Bytes("CF0100000002")),
            1);
  // Every body reads: in the clear, under key 1 and under key 2; B got all three.
  for (const char* id : {"p-0", "p-1", "p-2"}) {
    EXPECT_EQ(Subjects(*a_, absl::StrCat("case-", id)), std::vector<std::string>{kIdNumber}) << id;
  }
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 3; }, absl::Seconds(15)));
  // Reseal refuses while the node runs, then rewrites the two older bodies.
  RunResult busy = NodeCommand({"reseal", "--config", a_->config_path()});
  EXPECT_EQ(busy.exit_code, 2);
  EXPECT_THAT(busy.err, HasSubstr("stop the node first"));
  a_->Stop();
  RunResult reseal = NodeCommand({"reseal", "--config", a_->config_path()});
  ASSERT_EQ(reseal.exit_code, 0) << reseal.out << reseal.err;
  // The two older notices, and the access log's key (in the clear, then sealed by key 1).
  EXPECT_THAT(reseal.out, HasSubstr("sealed with key 2: 1 bodies that were in the clear, 2 sealed "
                                    "with older keys; 1 were already"));
  EXPECT_FALSE(Holds(*a_, kIdNumber));
  EXPECT_FALSE(Holds(*a_, kName));
  // Key 1 is no longer needed: the file keeps key 2 only, and everything still reads.
  {
    std::ifstream in(KeyFile(*a_));
    std::string line, kept;
    while (std::getline(in, line)) {
      if (absl::StartsWith(line, "2 ")) kept = line + "\n";
    }
    ASSERT_FALSE(kept.empty());
    std::ofstream(KeyFile(*a_), std::ios::trunc) << kept;
  }
  ASSERT_OK(a_->Start());
  for (const char* id : {"p-0", "p-1", "p-2"}) {
    EXPECT_EQ(Subjects(*a_, absl::StrCat("case-", id)), std::vector<std::string>{kIdNumber}) << id;
  }
  // A key file without the key that sealed the data is refused at start, naming the key.
  a_->Stop();
  {
    std::ofstream(KeyFile(*a_), std::ios::trunc)
        << "7 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
  }
  EXPECT_THAT(a_->Start(), StatusIs(absl::StatusCode::kInternal, HasSubstr("key 2 sealed personal data here")));
}

TEST_F(PrivacyTest, AKeyFileOthersMayReadIsRefusedBeforeTheNodeStarts) {
  AddKey(*a_);
  chmod(KeyFile(*a_).c_str(), 0644);
  Seal(*a_);
  a_->WriteConfig();
  RunResult check = NodeCommand({"--config", a_->config_path(), "--check"});
  EXPECT_EQ(check.exit_code, 2);
  EXPECT_THAT(check.err, HasSubstr("storage.key_file: " + KeyFile(*a_) +
                                   " is open to group or others (mode 0644)"));
}

// Every read of a person's data leaves a record of who, when, why and whose (by a keyed digest):
// the inbox, a case timeline, a remote query at both ends, a coordinator's evidence read, and
// the listing itself; `caseway audit access --subject` shows them for one person only.
TEST_F(PrivacyTest, EveryReadOfAPersonsDataIsInTheAccessLog) {
  AddKey(*b_);
  Seal(*b_);  // B's access-log key is sealed at rest, A's is not: both work alike
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  auto b = b_->NewClient();
  constexpr char kOther[] = "110105194912310029";
  v1::Notice other = SampleNotice("y-0", {kB});
  other.mutable_subject()->set_id_number(kOther);
  ASSERT_OK(a->PublishBatch({SampleNotice("x-0", {kB}), SampleNotice("x-1", {kB}), other}));
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 3; }, absl::Seconds(15)));
  // A read without a purpose is refused, naming the field.
  {
    grpc::ClientContext ctx;
    v1::CaseRequest req;
    req.set_case_id("case-x-0");
    v1::CaseResponse resp;
    absl::Status s = common::FromGrpcStatus(b->stub()->Case(&ctx, req, &resp));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    ASSERT_EQ(common::ViolationsOf(s).size(), 1u) << s;
    EXPECT_EQ(common::ViolationsOf(s)[0].field, "purpose");
    EXPECT_EQ(resp.events_size(), 0);
  }
  client::InboxOptions take;
  take.purpose = "inflow processing";
  int items = 0;
  ASSERT_OK(b->Inbox(take, [&](const v1::InboxItem&) { return ++items > 0; }));
  EXPECT_EQ(items, 3);
  ASSERT_OK(b->Case("case-x-0", "case review").status());
  v1::QueryPeerRequest ask;
  ask.set_peer(kA);
  ask.set_id_number(kIdNumber);
  ask.set_purpose("residence verification");
  ASSERT_OK(b->QueryPeer(ask).status());
  RunResult ev = Audit({"evidence", a_->address(), "x-1"});
  ASSERT_EQ(ev.exit_code, 0) << ev.out << ev.err;

  // At B, by the office, through the CLI: X's reads, and the listing itself.
  std::vector<std::string> cli = {BinDir() + "/caseway", "audit", "access", "--subject", kIdNumber};
  for (const auto& f : b_->CliFlags()) cli.push_back(f);
  cli.push_back("--purpose");
  cli.push_back("the subject asked who read their file");
  RunResult listed = RunCommand(cli);
  ASSERT_EQ(listed.exit_code, 0) << listed.out << listed.err;
  EXPECT_THAT(listed.out, ::testing::ContainsRegex("inbox +- +3 +spiffe://fed.test/client/440305/office"));
  EXPECT_THAT(listed.out, HasSubstr("purpose: inflow processing"));
  EXPECT_THAT(listed.out, ::testing::ContainsRegex("case +- +1 "));
  EXPECT_THAT(listed.out, HasSubstr("purpose: case review"));
  EXPECT_THAT(listed.out, ::testing::ContainsRegex("query-received +360102 +2 "));
  EXPECT_THAT(listed.out, HasSubstr("purpose: residence verification"));
  EXPECT_THAT(listed.out, HasSubstr("purpose: the subject asked who read their file"));
  // A listing names the person by identity number; without one, the refusal says so.
  {
    auto none = b->AccessLog(v1::AccessLogRequest());
    EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument) << none.status();
    ASSERT_EQ(common::ViolationsOf(none.status()).size(), 1u) << none.status();
    EXPECT_EQ(common::ViolationsOf(none.status())[0].field, "id_number");
  }
  // The other person was in the inbox read only (and now in their own listing).
  v1::AccessLogRequest whose;
  whose.set_id_number(kOther);
  auto other_reads = b->AccessLog(whose);
  ASSERT_OK(other_reads);
  std::vector<std::string> what;
  for (const auto& r : other_reads->records()) what.push_back(r.what());
  EXPECT_EQ(what, (std::vector<std::string>{"inbox", "access-log"}));
  // At A: B's node asked, with the office's purpose, and the coordinator read one notice.
  whose.set_id_number(kIdNumber);
  auto at_a = a->AccessLog(whose);
  ASSERT_OK(at_a);
  ASSERT_EQ(at_a->records_size(), 3) << at_a->DebugString();
  EXPECT_EQ(at_a->records(0).what(), "query-answered");
  EXPECT_EQ(at_a->records(0).who(), "spiffe://fed.test/node/440305");
  EXPECT_EQ(at_a->records(0).peer(), kB);
  EXPECT_EQ(at_a->records(0).purpose(), "residence verification");
  EXPECT_EQ(at_a->records(1).what(), "evidence");
  EXPECT_EQ(at_a->records(1).who(), "spiffe://fed.test/auditor/coordinator");
  EXPECT_EQ(at_a->records(2).what(), "access-log");
  // Neither database holds the number in the access log: only keyed digests.
  for (NodeProcess* node : {a_.get(), b_.get()}) {
    EXPECT_EQ(node->Count("SELECT count(*) FROM access_subject WHERE length(subject) = 16"),
              node->Count("SELECT count(*) FROM access_subject"));
  }
  EXPECT_FALSE(Holds(*b_, kIdNumber));
}

}  // namespace
}  // namespace caseway::testing
