// The integrator examples end to end against real nodes over mutual TLS: the Python adapter
// (examples/python, Debian's python3-grpcio with stubs generated from proto/ at build time) and
// the Node.js client (examples/node, @grpc/grpc-js from the npm registry, proto/ loaded at run
// time). Both are independent gRPC implementations: what they can do, any integrator can.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kA[] = "360102";  // Nanchang, Jiangxi
constexpr char kB[] = "440305";  // Shenzhen, Guangdong

class ExamplesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<Pki>(dir_.path() + "/pki", "fed.test");
    a_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), kA);
    b_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), kB);
    a_->AddPeer(*b_);
    b_->AddPeer(*a_);
    ASSERT_OK(a_->Start());
    ASSERT_OK(b_->Start());
  }

  // The connection flags of an office of `node` (the examples take no configuration file).
  std::vector<std::string> Tls(const NodeProcess& node) {
    const std::string client = pki_->Client(node.jurisdiction(), "office");
    return {"--address", node.address(), "--ca", pki_->ca(), "--cert", client + ".crt",
            "--key", client + ".key"};
  }

  // Runs the Python adapter (Debian's interpreter, which has python3-grpcio) against `node`.
  RunResult Python(const NodeProcess& node, std::vector<std::string> args) {
    const std::string stubs = BinDir() + "/../examples/python";
    EXPECT_TRUE(std::filesystem::exists(stubs + "/caseway/v1/gateway_pb2_grpc.py"))
        << "no Python stubs in " << stubs << " (the build generates them with grpc_python_plugin)";
    std::vector<std::string> argv = {"/usr/bin/env", "PYTHONPATH=" + stubs, "/usr/bin/python3",
                                     SourceDir() + "/examples/python/adapter.py"};
    for (auto& f : Tls(node)) argv.push_back(f);
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  // Runs the Node.js client against `node`, with the packages tests/npm-install.sh installed.
  RunResult Node(const NodeProcess& node, std::vector<std::string> args) {
    const std::string modules = BinDir() + "/../npm/examples-node/node_modules";
    EXPECT_TRUE(std::filesystem::exists(modules + "/@grpc/grpc-js"))
        << "no @grpc/grpc-js in " << modules << ": run bash tests/npm-install.sh BUILD_DIR";
    std::vector<std::string> argv = {"/usr/bin/env", "NODE_PATH=" + modules, "node",
                                     SourceDir() + "/examples/node/caseway.js"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (auto& f : Tls(node)) argv.push_back(f);
    return RunCommand(argv);
  }

  TempDir dir_;
  std::unique_ptr<Pki> pki_;
  std::unique_ptr<NodeProcess> a_, b_;
};

constexpr char kCsvHeader[] =
    "notice_id,case_id,kind,name,id_number,sex,birth_date,registered_region,destinations,"
    "priority,occurred_at,items\n";

TEST_F(ExamplesTest, ThePythonAdapterPublishesFollowsTheInboxAndAnswersRequests) {
  const std::string csv = dir_.path() + "/rows.csv";
  {
    std::ofstream out(csv);
    out << kCsvHeader
        << "py-1,case-py-1,verification_request,李四,11010519491231002X,F,1990-05-17,360102,"
           "440305,subject,2026-11-20 09:30,marital status;certificate validity\n"
        << "py-2,case-py-2,verification_request,王五,110105194912310029,F,1988-02-01,360102,"
           "440305,normal,2026-11-21 10:00,marital status\n"
        << "py-3,case-py-3,departure,赵六,11010519491231002X,M,1985-07-30,360102,440305,normal,"
           "2026-11-22 08:00,\n";
  }
  RunResult r = Python(*a_, {"publish", csv});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("py-1\tstored\t440305:1"));
  EXPECT_THAT(r.out, HasSubstr("py-3\tstored\t440305:3"));
  // A retry resends the identical notices: the original results, marked duplicate.
  r = Python(*a_, {"publish", csv});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("py-2\tduplicate\t440305:2"));

  // Two bad rows: every bad field of each is named from the BadRequest details, nothing stored.
  const std::string bad = dir_.path() + "/bad.csv";
  {
    std::ofstream out(bad);
    out << kCsvHeader
        << "py-4,case-py-4,verification_request,,12345,F,1990-05-17,360102,440305,normal,"
           "2026-11-20 09:30,marital status\n"
        << "py-5,case py 5,verification_request,钱七,11010519491231002X,F,1990-05-17,360102,"
           "999999,normal,2026-11-20 09:30,marital status\n";
  }
  r = Python(*a_, {"publish", bad, "--dry-run"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("refused: INVALID_ARGUMENT"));
  EXPECT_THAT(r.err, HasSubstr("reason: INVALID_NOTICE"));
  EXPECT_THAT(r.err, HasSubstr("notices[0].subject.name: required"));
  EXPECT_THAT(r.err, HasSubstr("notices[0].subject.id_number"));
  EXPECT_THAT(r.err, HasSubstr("notices[1].case_id"));
  EXPECT_THAT(r.err, HasSubstr("notices[1].destinations[0]"));
  EXPECT_EQ(a_->Published(), 3);

  // B's office follows its inbox, acknowledges each notice and answers both requests.
  r = Python(*b_, {"follow", "--limit", "3", "--answer", "--timeout", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"answered\": \"py-1\""));
  EXPECT_THAT(r.out, HasSubstr("\"answered\": \"py-2\""));
  EXPECT_THAT(r.out, Not(HasSubstr("\"answered\": \"py-3\"")));
  EXPECT_EQ(b_->InboxUnacked(), 0);
  // The feedbacks reach A and clear what B owed it.
  ASSERT_TRUE(WaitFor([&] { return a_->InboxTotal() == 2; },
                      absl::Seconds(20)));
  // (The departure still owes its confirmation: the adapter answers only requests.)
  auto todo = a_->NewClient()->Todo(v1::TodoRequest());
  ASSERT_OK(todo);
  ASSERT_EQ(todo->owed_to_us(), 1u) << todo->DebugString();
  EXPECT_EQ(todo->items(0).notice_id(), "py-3");
  // The timeline at A shows the request and the feedback that answered it.
  r = Python(*a_, {"case", "case-py-1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"notice_id\": \"py-1\""));
  EXPECT_THAT(r.out, HasSubstr("\"notice_id\": \"fb-360102-py-1\""));
  EXPECT_THAT(r.out, HasSubstr("STATE_ANSWERED"));
}

TEST_F(ExamplesTest, TheGrpcJsClientPublishesAndReadsTheInboxOverMutualTls) {
  RunResult r = Node(*a_, {"publish", "--destination", kB, "--count", "3", "--prefix", "js-"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("js-0\tstored\t440305:1"));
  EXPECT_THAT(r.out, HasSubstr("js-2\tstored\t440305:3"));
  r = Node(*a_, {"publish-bad", "--destination", kB});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("refused: INVALID_ARGUMENT"));
  EXPECT_THAT(r.out, HasSubstr("reason: INVALID_NOTICE"));
  EXPECT_THAT(r.out, HasSubstr("notice.subject.id_number: 18 characters expected"));
  EXPECT_THAT(r.out, HasSubstr("notice.priority: required"));
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 3; },
                      absl::Seconds(20)));
  r = Node(*b_, {"inbox", "--ack"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("\"notice_id\":\"js-", i,
                                              "\",\"kind\":\"verification_request\"")));
  }
  EXPECT_THAT(r.err, HasSubstr("read 3 notices (acknowledged)"));
  EXPECT_EQ(b_->InboxUnacked(), 0);
  // The round trip of an office: B's system answers A's verification requests with feedback,
  // and A's inbox holds the answers, each in reply to its request.
  r = Node(*a_, {"publish", "--destination", kB, "--count", "2", "--prefix", "js-ask-"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 5; },
                      absl::Seconds(20)));
  r = Node(*b_, {"inbox", "--answer"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("{\"answered\":\"js-ask-0\",\"duplicate\":false}"));
  EXPECT_THAT(r.out, HasSubstr("{\"answered\":\"js-ask-1\",\"duplicate\":false}"));
  EXPECT_EQ(b_->InboxUnacked(), 0);
  ASSERT_TRUE(WaitFor([&] { return a_->InboxTotal() == 2; },
                      absl::Seconds(20)));
  r = Node(*a_, {"inbox", "--ack"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"notice_id\":\"fb-360102-js-ask-0\",\"kind\":\"feedback\""));
  EXPECT_THAT(r.out, HasSubstr("\"notice_id\":\"fb-360102-js-ask-1\",\"kind\":\"feedback\""));
  // The requests' replies are no longer owed at B.
  v1::TodoRequest owed;
  owed.set_side(v1::TodoRequest::SIDE_OWED_BY_US);
  owed.set_include_cleared(true);
  auto todo = b_->NewClient()->Todo(owed);
  ASSERT_OK(todo.status());
  int asks = 0;
  for (const auto& item : todo->items()) {
    if (!absl::StartsWith(item.notice_id(), "js-ask-")) continue;
    ++asks;
    EXPECT_EQ(item.state(), v1::TodoItem::STATE_ANSWERED) << item.notice_id();
  }
  EXPECT_EQ(asks, 2);
  // Without a client certificate of the federation the handshake fails, and the client says so.
  const std::string stranger_dir = dir_.path() + "/stranger";
  Pki stranger(stranger_dir, "fed.test");
  const std::string prefix = stranger.Client(kA, "office");
  std::vector<std::string> argv = {"/usr/bin/env",
                                   "NODE_PATH=" + BinDir() + "/../npm/examples-node/node_modules",
                                   "node", SourceDir() + "/examples/node/caseway.js", "inbox",
                                   "--address", a_->address(), "--ca", pki_->ca(), "--cert",
                                   prefix + ".crt", "--key", prefix + ".key", "--timeout", "10"};
  r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("refused: UNAVAILABLE"));
}

// `caseway conformance` passes against a correct node and names the failing row otherwise.
TEST_F(ExamplesTest, ConformancePassesOnAHealthyNodeAndNamesTheFailingCheck) {
  auto conformance = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {BinDir() + "/caseway", "conformance", "--destination", kB};
    argv.insert(argv.end(), extra.begin(), extra.end());
    for (auto& f : a_->CliFlags()) argv.push_back(f);
    return RunCommand(argv);
  };
  RunResult r = conformance({});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* check : {"connect", "validate only", "publish", "retry is idempotent",
                            "other content, same id", "bad fields are named",
                            "same id twice in a batch", "round trip", "case timeline", "inbox"}) {
    EXPECT_THAT(r.out, ::testing::ContainsRegex(absl::StrCat(check, " +pass"))) << r.out;
  }
  EXPECT_THAT(r.out, HasSubstr("OK: every check passed"));
  // The test notice reached the destination's inbox.
  int tests = 0;
  for (const auto& item : b_->InboxItems()) {
    tests += absl::StartsWith(item.notice().notice_id(), "conformance-360102-");
  }
  EXPECT_EQ(tests, 1);

  // The destination is down: the round trip fails, and the table says which check and why.
  b_->Stop();
  r = conformance({"--timeout", "3"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("round trip +FAIL +440305 did not acknowledge"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("retry is idempotent +pass"));
  EXPECT_THAT(r.out, HasSubstr("check(s) failed"));

  // A node that misbehaves (it answers changed content under a stored id as a duplicate, so a
  // provincial system's correction would be lost without a word): that row fails, by name.
  ASSERT_OK(b_->Start());
  a_->Stop();
  a_->set_env("CASEWAY_FAULTS=conflict_as_duplicate=1");
  ASSERT_OK(a_->Start());
  r = conformance({});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, ::testing::ContainsRegex(
                         "other content, same id +FAIL +accepted: a changed notice under a stored "
                         "id must be refused"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("round trip +pass"));
  EXPECT_THAT(r.out, HasSubstr("1 check(s) failed"));
}

}  // namespace
}  // namespace caseway::testing
