// Field-level sharing policies and department parties, through real nodes over mutual TLS: a peer
// receives only the fields the origin's policy grants it, and its copy still verifies against
// the origin's signed manifest; a changed policy applies from its version on and is in the log;
// a department reads only the granted kinds and fields and nothing else, by query or following
// the node's feed (`caseway department`); and a coordinator's
// `caseway audit verify` shows that nothing beyond the policy left the node.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/digest.h"
#include "common/grpc_status.h"
#include "common/refusal.h"
#include "common/tls.h"
#include "tests/testing/audited_pair.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kDepartment[] = "department/360102/public-security";

// B may see who moved and where to, never the address; certificates go to it as their envelope.
// The public security bureau may read certificates only: the holder's name and number and the
// certificate itself.
constexpr char kPolicyV1[] = R"(
version: "1"
grants:
  - party: "440305"
    kinds:
      - kind: residence_change
        fields: [subject.name, subject.id_number, residence_change.direction,
                 residence_change.effective_date, residence_change.residence_region]
  - party: department/360102/public-security
    kinds:
      - {kind: certificate, fields: [subject.name, subject.id_number, certificate]}
)";

// Version 2 also grants B the new address.
constexpr char kPolicyV2[] = R"(
version: "2"
grants:
  - party: "440305"
    kinds:
      - kind: residence_change
        fields: [subject.name, subject.id_number, residence_change]
  - party: department/360102/public-security
    kinds:
      - {kind: certificate, fields: [subject.name, subject.id_number, certificate]}
)";

v1::Notice Move(const std::string& id) {
  v1::Notice n = SampleNotice(id, {"440305"});
  n.mutable_subject()->set_residence_address("江西省南昌市东湖区测试路1号");
  n.mutable_residence_change()->set_residence_address("广东省深圳市南山区测试路2号");
  n.mutable_residence_change()->set_childbearing_status("测试状态");
  return n;
}

v1::Notice Certificate(const std::string& id) {
  v1::Notice n = SampleNotice(id, {"440305"});
  n.mutable_subject()->set_residence_address("江西省南昌市东湖区测试路1号");
  auto* c = n.mutable_certificate();
  c->set_action(v1::Certificate::ACTION_ISSUED);
  c->set_type(v1::Certificate::TYPE_MARRIAGE_AND_CHILDBEARING);
  c->set_number("JX-0001");
  c->mutable_valid_from()->set_year(2026);
  c->mutable_valid_from()->set_month(9);
  c->mutable_valid_from()->set_day(1);
  c->mutable_valid_until()->set_year(2031);
  c->mutable_valid_until()->set_month(9);
  c->mutable_valid_until()->set_day(1);
  return n;
}

class SharingTest : public AuditedPairTest {
 protected:
  void SetPolicy(const char* yaml) {
    std::ofstream(PolicyPath()) << yaml;
    a_->set_extra_yaml("sharing_policy_file: " + PolicyPath() + "\n");
  }
  std::string PolicyPath() const { return dir_.path() + "/sharing.yaml"; }

  // Received returns B's copy of notice `id` as B's inbox hands it to a consumer.
  v1::Notice Received(const std::string& id) {
    std::vector<v1::Notice> copies;
    for (const auto& item : b_->InboxItems()) {
      if (item.notice().notice_id() == id) copies.push_back(item.notice());
    }
    EXPECT_EQ(copies.size(), 1u) << id;
    return copies.empty() ? v1::Notice() : copies[0];
  }

  // ReadsOfThePerson counts the records A's access log (its AccessLog RPC) holds of reads of the
  // test person's data by `who` (a certificate identity ending so), of kind `what` when given.
  int ReadsOfThePerson(const std::string& who, const std::string& what = "") {
    v1::AccessLogRequest req;
    req.set_id_number("11010519491231002X");
    req.set_limit(1000);
    auto reads = a_->NewClient()->AccessLog(req);
    EXPECT_TRUE(reads.ok()) << reads.status();
    if (!reads.ok()) return -1;
    int n = 0;
    for (const auto& r : reads->records()) {
      n += absl::EndsWith(r.who(), who) && (what.empty() || r.what() == what);
    }
    return n;
  }

  std::unique_ptr<v1::PeerExchange::Stub> PeerStubAs(const std::string& prefix) {
    auto creds = common::ChannelCredentials({pki_->ca(), prefix + ".crt", prefix + ".key"});
    EXPECT_TRUE(creds.ok()) << creds.status();
    return v1::PeerExchange::NewStub(grpc::CreateChannel(a_->address(), *creds));
  }

  absl::StatusOr<v1::QueryAnswer> AskAsDepartment(const std::string& prefix, const std::string& asker,
                                                  const std::string& case_id) {
    v1::QueryRequest q;
    q.set_asker(asker);
    q.set_purpose(kTestPurpose);
    q.set_nonce(std::string(16, 'd'));
    q.set_case_id(case_id);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::QueryResponse resp;
    absl::Status s = common::FromGrpcStatus(PeerStubAs(prefix)->Query(&ctx, q, &resp));
    if (!s.ok()) return s;
    v1::QueryAnswer answer;
    if (!answer.ParseFromString(resp.answer().message())) return absl::DataLossError("answer");
    return answer;
  }

  // Follow runs `caseway department follow --once` as the public security bureau: every
  // granted notice A stored after the position in `state`, as CaseEvent JSON lines.
  RunResult Follow(const std::string& prefix, const std::string& state) {
    return Department(prefix, {"follow", kA, "--once", "--state", state});
  }
  // Department runs `caseway department ARGS...` with the department certificate `prefix`.
  RunResult Department(const std::string& prefix, std::vector<std::string> args) {
    std::vector<std::string> argv = {BinDir() + "/caseway", "department"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& f :
         {std::string("--address"), a_->address(), std::string("--ca"), pki_->ca(),
          std::string("--cert"), prefix + ".crt", std::string("--key"), prefix + ".key",
          std::string("--directory"), pki_->dir() + "/directory.yaml", std::string("--purpose"),
          std::string("case verification")}) {
      argv.push_back(f);
    }
    return RunCommand(argv);
  }
  static std::vector<v1::CaseEvent> Events(const std::string& out) {
    std::vector<v1::CaseEvent> events;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      v1::CaseEvent e;
      EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &e).ok()) << line;
      events.push_back(std::move(e));
    }
    return events;
  }

  void Settled() {
    for (NodeProcess* n : {a_.get(), b_.get()}) {
      int64_t size = EventsSize(*n);
      ASSERT_TRUE(WaitFor(
          [&] { return n->CheckpointSize() >= size; },
          absl::Seconds(15)));
    }
  }
};

TEST_F(SharingTest, APeerReceivesOnlyTheGrantedFieldsAndAChangedPolicyAppliesFromItsVersion) {
  SetPolicy(kPolicyV1);
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  ASSERT_OK(a->Publish(Move("m-1")));
  ASSERT_OK(a->Publish(Certificate("c-1")));
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 2; },
                      absl::Seconds(20))) << b_->log();

  // B stored its copies: B refuses a batch whose bytes do not match the origin's signed
  // manifest, so they verify against A's signature as they are.
  v1::Notice move = Received("m-1");
  EXPECT_EQ(move.subject().name(), "测试人");
  EXPECT_EQ(move.subject().id_number(), "11010519491231002X");
  EXPECT_EQ(move.subject().residence_address(), "");
  EXPECT_EQ(move.subject().sex(), v1::SEX_UNSPECIFIED);
  EXPECT_EQ(move.residence_change().direction(), v1::ResidenceChange::DIRECTION_DEPARTURE);
  EXPECT_EQ(move.residence_change().residence_region(), "440305");
  EXPECT_EQ(move.residence_change().residence_address(), "");
  EXPECT_EQ(move.residence_change().childbearing_status(), "");
  EXPECT_EQ(move.case_id(), "case-m-1");
  v1::Notice cert = Received("c-1");  // a kind B is granted nothing of: its envelope
  EXPECT_TRUE(cert.has_certificate());
  EXPECT_FALSE(cert.has_subject());
  EXPECT_EQ(cert.certificate().number(), "");
  // A keeps the whole notice: its own timeline shows the address.
  auto timeline = a->Case("case-m-1");
  ASSERT_OK(timeline);
  ASSERT_EQ(timeline->events_size(), 1);
  EXPECT_EQ(timeline->events(0).notice().residence_change().residence_address(),
            "广东省深圳市南山区测试路2号");
  // The policy is in A's log and kept, signed, as evidence.
  EXPECT_EQ(a_->Evidence(v1::Evidence::KIND_SHARING_POLICY).size(), 1u);

  // Version 2 grants the new address: it applies to what is published from then on; what B was
  // sent under version 1 is not sent again.
  a_->Stop();
  SetPolicy(kPolicyV2);
  ASSERT_OK(a_->Start());
  a = a_->NewClient();
  ASSERT_OK(a->Publish(Move("m-2")));
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 3; },
                      absl::Seconds(20)));
  EXPECT_EQ(Received("m-2").residence_change().residence_address(), "广东省深圳市南山区测试路2号");
  EXPECT_EQ(Received("m-2").subject().residence_address(), "");
  EXPECT_EQ(Received("m-1").residence_change().residence_address(), "");
  EXPECT_EQ(a_->Evidence(v1::Evidence::KIND_SHARING_POLICY).size(), 2u);

  // A changed policy under a version already applied is refused at start, naming the rule.
  a_->Stop();
  std::string changed = kPolicyV2;
  changed.replace(changed.find("subject.name, "), 14, "");
  SetPolicy(changed.c_str());
  EXPECT_FALSE(a_->Start().ok());
  EXPECT_THAT(a_->log(), HasSubstr("version 2 was applied before with other content"));
  SetPolicy(kPolicyV2);
  ASSERT_OK(a_->Start());

  // The coordinator: both logs verify, every exchange reconciles (each side by the digest of the
  // copy B was sent), and nothing that left A holds a field beyond the policy in force.
  Settled();
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  r = AuditUntil({"reconcile", a_->address(), b_->address()}, "OK: every exchange matched");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // One notice's evidence at the origin: the manifest signs B's copy, which A shows.
  r = Audit({"evidence", a_->address(), "m-1"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("440305 was sent its copy under the sharing policy"));
  EXPECT_THAT(r.out, HasSubstr("holds this notice's digest"));
}

TEST_F(SharingTest, ANodeThatSendsMoreThanItsPolicyIsFoundByTheCoordinator) {
  SetPolicy(kPolicyV1);
  a_->set_env("CASEWAY_FAULTS=share_whole=1");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  ASSERT_OK(a_->NewClient()->Publish(Move("w-1")));
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 1; },
                      absl::Seconds(20)));
  EXPECT_EQ(Received("w-1").residence_change().residence_address(), "广东省深圳市南山区测试路2号");
  Settled();
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("BEYOND_POLICY"));
  EXPECT_THAT(r.out, HasSubstr("1 notice(s) sent to 440305 hold fields its sharing policy (version 1)"));
  EXPECT_THAT(r.out, HasSubstr("subject.residence_address"));
  EXPECT_THAT(r.out, HasSubstr("residence_change.childbearing_status"));
}

TEST_F(SharingTest, ADepartmentReadsOnlyTheGrantedKindsAndFields) {
  SetPolicy(kPolicyV1);
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  ASSERT_OK(a->Publish(Certificate("c-2")));
  ASSERT_OK(a->Publish(Move("m-3")));
  const std::string police = pki_->Department(kA, "public-security");

  // The certificate, with the holder's name and number and the certificate: no address.
  auto answer = AskAsDepartment(police, kDepartment, "case-c-2");
  ASSERT_OK(answer);
  ASSERT_EQ(answer->notices_size(), 1);
  EXPECT_EQ(answer->asker(), kDepartment);
  EXPECT_FALSE(answer->sharing_policy_digest().empty());
  v1::Notice n;
  ASSERT_TRUE(n.ParseFromString(answer->notices(0).notice()));
  EXPECT_EQ(n.certificate().number(), "JX-0001");
  EXPECT_EQ(n.subject().id_number(), "11010519491231002X");
  EXPECT_EQ(n.subject().residence_address(), "");
  EXPECT_EQ(n.subject().sex(), v1::SEX_UNSPECIFIED);
  // A residence change is not granted: the department sees what an unknown case shows.
  auto move = AskAsDepartment(police, kDepartment, "case-m-3");
  ASSERT_OK(move);
  EXPECT_EQ(move->notices_size(), 0);
  // The department's own CLI asks the same, verified against A's key.
  RunResult cli = Department(police, {"query", kA, "--case", "case-c-2"});
  ASSERT_EQ(cli.exit_code, 0) << cli.out << cli.err;
  std::vector<v1::CaseEvent> events = Events(cli.out);
  ASSERT_EQ(events.size(), 1u) << cli.out;
  EXPECT_EQ(events[0].notice().certificate().number(), "JX-0001");
  EXPECT_EQ(events[0].notice().subject().residence_address(), "");
  // The read is in A's access log under the department's identity.
  EXPECT_GE(ReadsOfThePerson("/department/360102/public-security"), 1);
  // A keeps the two answers with a notice, signed, for a coordinator (not the empty one): its
  // verify checks them against the policy.
  EXPECT_EQ(a_->Evidence(v1::Evidence::KIND_QUERY_ANSWER_SENT, kDepartment).size(), 2u);
  Settled();
  RunResult verify = Audit({"verify", a_->address()});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;

  // Everything else is refused.
  auto spoofed = AskAsDepartment(police, "360102", "case-c-2");
  EXPECT_EQ(spoofed.status().code(), absl::StatusCode::kPermissionDenied) << spoofed.status();
  EXPECT_EQ(common::ReasonOf(spoofed.status()), "NOT_ASKER");
  const std::string civil = pki_->Department(kA, "civil-affairs");
  auto ungranted = AskAsDepartment(civil, "department/360102/civil-affairs", "case-c-2");
  EXPECT_EQ(ungranted.status().code(), absl::StatusCode::kPermissionDenied) << ungranted.status();
  EXPECT_EQ(common::ReasonOf(ungranted.status()), "NOT_GRANTED");
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = PeerStubAs(police)->Subscribe(&ctx);
    v1::SubscribeRequest open;
    open.mutable_open()->set_destination(kDepartment);
    stream->Write(open);
    v1::SubscribeResponse resp;
    while (stream->Read(&resp)) {
    }
    grpc::Status s = stream->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  }
  {
    auto creds = common::ChannelCredentials({pki_->ca(), police + ".crt", police + ".key"});
    ASSERT_OK(creds);
    auto gateway = v1::Gateway::NewStub(grpc::CreateChannel(a_->address(), *creds));
    v1::PublishRequest req;
    *req.mutable_notice() = Certificate("by-police");
    v1::PublishResult res;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Status s = gateway->Publish(&ctx, req, &res);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  }
}

TEST_F(SharingTest, ADepartmentFollowsTheNodesFeedOfGrantedNotices) {
  SetPolicy(kPolicyV1);
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  auto a = a_->NewClient();
  ASSERT_OK(a->Publish(Certificate("c-3")));
  ASSERT_OK(a->Publish(Move("m-4")));
  ASSERT_OK(a->Publish(Certificate("c-5")));
  // A certificate A receives from B is in A's feed too.
  v1::Notice from_b = Certificate("cb-1");
  from_b.clear_destinations();
  from_b.add_destinations(kA);
  ASSERT_OK(b_->NewClient()->Publish(from_b));
  ASSERT_TRUE(WaitFor([&] { return a_->InboxTotal() == 1; },
                      absl::Seconds(20))) << a_->log();
  const std::string police = pki_->Department(kA, "public-security");
  const std::string state = dir_.path() + "/police-feed.json";

  // The granted kind only, with the granted fields only, verified against A's key.
  RunResult r = Follow(police, state);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::vector<v1::CaseEvent> events = Events(r.out);
  ASSERT_EQ(events.size(), 3u) << r.out;
  EXPECT_EQ(events[0].notice().notice_id(), "c-3");
  EXPECT_EQ(events[0].role(), v1::QueryNotice::ROLE_PUBLISHED);
  EXPECT_EQ(events[1].notice().notice_id(), "c-5");
  EXPECT_EQ(events[2].notice().notice_id(), "cb-1");
  EXPECT_EQ(events[2].role(), v1::QueryNotice::ROLE_RECEIVED);
  for (const v1::CaseEvent& e : events) {
    EXPECT_EQ(e.holder(), kA);
    EXPECT_EQ(e.notice().certificate().number(), "JX-0001");
    EXPECT_EQ(e.notice().subject().id_number(), "11010519491231002X");
    EXPECT_EQ(e.notice().subject().residence_address(), "");
    EXPECT_EQ(e.notice().subject().sex(), v1::SEX_UNSPECIFIED);
  }
  EXPECT_EQ(r.out.find("m-4"), std::string::npos);

  // The position is kept: the next run prints only what was stored since, and then nothing.
  ASSERT_OK(a->Publish(Certificate("c-6")));
  r = Follow(police, state);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  events = Events(r.out);
  ASSERT_EQ(events.size(), 1u) << r.out;
  EXPECT_EQ(events[0].notice().notice_id(), "c-6");
  r = Follow(police, state);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "");
  std::ifstream position_file(state);
  std::string position((std::istreambuf_iterator<char>(position_file)), {});
  EXPECT_THAT(position, HasSubstr("\"epoch\""));

  // Every page that held the person's data is in A's access log, found by the person's number
  // (the empty poll names no one); every page, the empty one too, is in its exchange log under
  // the policy applied.
  EXPECT_EQ(ReadsOfThePerson("/department/360102/public-security", "feed-read"), 2);
  EXPECT_EQ(a_->Inspect().reads["feed-read"], 3) << "the empty poll is recorded too";
  // The answers with notices are kept for the coordinator; the empty poll is not.
  EXPECT_EQ(a_->Evidence(v1::Evidence::KIND_QUERY_ANSWER_SENT, kDepartment).size(), 2u);
  int answered = 0;
  for (const std::string& bytes : a_->LogBytes()) {
    v1::LogEntry e;
    ASSERT_TRUE(e.ParseFromString(bytes));
    if (e.kind() != v1::LogEntry::KIND_QUERY_ANSWERED || e.peer() != kDepartment) continue;
    ++answered;
    EXPECT_EQ(e.sharing_policy_digest().size(), 32u);
  }
  EXPECT_EQ(answered, 3);

  // A store that is another copy (restored from a backup, rebuilt by reseal: a new feed epoch)
  // refuses the old position, and the follower says to start again.
  a_->Stop();
  a_->Exec("DELETE FROM meta WHERE key = 'feed_epoch'");
  ASSERT_OK(a_->Start());
  r = Follow(police, state);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(r.err, HasSubstr("start again from the empty position"));
  EXPECT_EQ(r.out, "");
  r = Follow(police, dir_.path() + "/police-feed-again.json");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Events(r.out).size(), 4u) << r.out;

  // A department the policy grants nothing is refused, and so is a node asking for a feed.
  const std::string civil = pki_->Department(kA, "civil-affairs");
  r = Follow(civil, dir_.path() + "/civil-feed.json");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("is granted nothing by this node's sharing policy"));
  EXPECT_EQ(r.out, "");
  v1::QueryRequest q;
  q.set_asker(kB);
  q.set_purpose(kTestPurpose);
  q.set_nonce(std::string(16, 'n'));
  q.mutable_after();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::QueryResponse resp;
  grpc::Status s = PeerStubAs(pki_->Node(kB))->Query(&ctx, q, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("after"));
}

TEST_F(SharingTest, ANodeThatAnswersADepartmentBeyondItsPolicyIsFoundByTheCoordinator) {
  SetPolicy(kPolicyV1);
  // The second answer's signature is broken too: the department's CLI must not print it.
  a_->set_env("CASEWAY_FAULTS=answer_whole=1,bad_query_answer_signature=2");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  ASSERT_OK(a_->NewClient()->Publish(Certificate("c-7")));
  const std::string police = pki_->Department(kA, "public-security");
  auto answer = AskAsDepartment(police, kDepartment, "case-c-7");
  ASSERT_OK(answer);
  ASSERT_EQ(answer->notices_size(), 1);
  v1::Notice n;
  ASSERT_TRUE(n.ParseFromString(answer->notices(0).notice()));
  EXPECT_EQ(n.subject().residence_address(), "江西省南昌市东湖区测试路1号");  // the fault
  RunResult cli = Department(police, {"query", kA, "--case", "case-c-7"});
  EXPECT_EQ(cli.exit_code, 1) << cli.out << cli.err;
  EXPECT_THAT(cli.err, HasSubstr("the answer's signature does not verify against 360102's key"));
  EXPECT_EQ(cli.out, "");
  Settled();
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("BEYOND_POLICY"));
  EXPECT_THAT(r.out, HasSubstr("1 notice(s) in its answers to department/360102/public-security"));
  EXPECT_THAT(r.out, HasSubstr("notice c-7 under version 1: subject.sex"));
  EXPECT_THAT(r.out, HasSubstr("subject.residence_address"));
  // The answer it kept with the broken signature proves nothing.
  EXPECT_THAT(r.out, HasSubstr("POLICY_UNPROVEN"));
  EXPECT_THAT(r.out, HasSubstr("does not verify against its key"));
  // A node that cannot show an answer it logged under the policy cannot prove it either.
  ASSERT_EQ(a_->Evidence(v1::Evidence::KIND_QUERY_ANSWER_SENT, kDepartment).size(), 2u);
  a_->Stop();
  a_->Exec("DELETE FROM evidence WHERE kind = 7");
  ASSERT_OK(a_->Start());
  r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("POLICY_UNPROVEN"));
  EXPECT_THAT(r.out, HasSubstr("the node shows no copy of it"));
}

// A department granted a notice without the identity number still leaves a record the office
// finds by that number: the access log names whose data the notice was, not what the copy shows.
TEST_F(SharingTest, ADepartmentsReadIsFoundByThePersonsNumberEvenWithoutTheNumberGranted) {
  SetPolicy(R"(
version: "names-only"
grants:
  - party: department/360102/public-security
    kinds:
      - {kind: certificate, fields: [subject.name, certificate.number]}
)");
  ASSERT_OK(a_->Start());
  auto a = a_->NewClient();
  ASSERT_OK(a->Publish(Certificate("c-9")));
  RunResult r = Follow(pki_->Department(kA, "public-security"), dir_.path() + "/feed.json");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::vector<v1::CaseEvent> events = Events(r.out);
  ASSERT_EQ(events.size(), 1u) << r.out;
  EXPECT_EQ(events[0].notice().subject().id_number(), "");
  EXPECT_EQ(events[0].notice().subject().name(), "测试人");
  v1::AccessLogRequest whose;
  whose.set_id_number("11010519491231002X");
  auto reads = a->AccessLog(whose);
  ASSERT_OK(reads);
  ASSERT_GE(reads->records_size(), 1) << reads->DebugString();
  EXPECT_EQ(reads->records(0).what(), "feed-read");
  EXPECT_EQ(reads->records(0).peer(), kDepartment);
}

// The coordinator checks every answer to a department, whatever its log entry claims: one logged
// without the policy (and so not kept) cannot be shown to respect it.
TEST_F(SharingTest, AnAnswerToADepartmentLoggedWithoutThePolicyIsUnproven) {
  SetPolicy(kPolicyV1);
  a_->set_env("CASEWAY_FAULTS=answer_unrecorded=1");
  ASSERT_OK(a_->Start());
  ASSERT_OK(b_->Start());
  ASSERT_OK(a_->NewClient()->Publish(Certificate("c-8")));
  auto answer = AskAsDepartment(pki_->Department(kA, "public-security"), kDepartment, "case-c-8");
  ASSERT_OK(answer);
  ASSERT_EQ(answer->notices_size(), 1);
  EXPECT_EQ(a_->Evidence(v1::Evidence::KIND_QUERY_ANSWER_SENT, kDepartment).size(), 0u);
  Settled();
  RunResult r = Audit({"verify", a_->address()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("POLICY_UNPROVEN"));
  EXPECT_THAT(r.out, HasSubstr("1 answer(s) it gave department/360102/public-security"));
  EXPECT_THAT(r.out, HasSubstr("its log entry names no sharing policy"));
}

}  // namespace
}  // namespace caseway::testing
