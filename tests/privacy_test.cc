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
#include "tests/testing/audited_pair.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kIdNumber[] = "11010519491231002X";  // SampleNotice's subject
constexpr char kName[] = "测试人";

// Holds says whether any of the node's database files (the database, its WAL) contains `text`.
bool Holds(const NodeProcess& node, const std::string& text) {
  for (const char* suffix : {"", "-wal"}) {
    std::ifstream in(node.db_path() + suffix, std::ios::binary);
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
  ASSERT_TRUE(WaitFor([&] { return b_->Count("SELECT count(*) FROM inbox") == 3 &&
                                   a_->Count("SELECT count(*) FROM inbox") == 1; },
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
    EXPECT_GT(node->Count("SELECT count(*) FROM notice") + node->Count("SELECT count(*) FROM inbox"), 0);
  }
  EXPECT_EQ(b_->Count("SELECT count(*) FROM evidence WHERE kind = 5"), 1);
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
  EXPECT_EQ(a_->Count("SELECT count(*) FROM notice WHERE substr(bytes, 1, 6) = x'CF0100000001'"), 1);
  EXPECT_EQ(a_->Count("SELECT count(*) FROM notice WHERE substr(bytes, 1, 6) = x'CF0100000002'"), 1);
  // Every body reads: in the clear, under key 1 and under key 2; B got all three.
  for (const char* id : {"p-0", "p-1", "p-2"}) {
    EXPECT_EQ(Subjects(*a_, absl::StrCat("case-", id)), std::vector<std::string>{kIdNumber}) << id;
  }
  ASSERT_TRUE(WaitFor([&] { return b_->Count("SELECT count(*) FROM inbox") == 3; }, absl::Seconds(15)));
  // Reseal refuses while the node runs, then rewrites the two older bodies.
  RunResult busy = NodeCommand({"reseal", "--config", a_->config_path()});
  EXPECT_EQ(busy.exit_code, 2);
  EXPECT_THAT(busy.err, HasSubstr("stop the node first"));
  a_->Stop();
  RunResult reseal = NodeCommand({"reseal", "--config", a_->config_path()});
  ASSERT_EQ(reseal.exit_code, 0) << reseal.out << reseal.err;
  EXPECT_THAT(reseal.out, HasSubstr("sealed with key 2: 1 bodies that were in the clear, 1 sealed "
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

}  // namespace
}  // namespace caseway::testing
