// Remote queries and case timelines through three real nodes over mutual TLS: who may see what
// (row by row), the signed answer, the per-peer rate limit, the query and answer entries in both
// logs reconciled by `caseway audit reconcile`, and `caseway case --peers` across three nodes.
#include <algorithm>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "caseway/v1/exchange_log.pb.h"
#include "caseway/v1/gateway.grpc.pb.h"
#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/digest.h"
#include "common/directory.h"
#include "common/grpc_status.h"
#include "common/proto_bytes.h"
#include "common/refusal.h"
#include "common/signing.h"
#include "common/status_macros.h"
#include "common/tls.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

constexpr char kA[] = "360102";  // Nanchang, Jiangxi
constexpr char kB[] = "440305";  // Shenzhen, Guangdong
constexpr char kC[] = "360111";  // Nanchang, Jiangxi
constexpr char kIdNumber[] = "11010519491231002X";  // SampleNotice's subject

v1::Notice OfCase(const std::string& id, const std::string& case_id,
                  const std::vector<std::string>& dests) {
  v1::Notice n = SampleNotice(id, dests);
  n.set_case_id(case_id);
  return n;
}

class QueryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<Pki>(dir_.path() + "/pki", "fed.test");
    for (const char* j : {kA, kB, kC}) {
      nodes_[j] = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), j);
    }
    for (const char* x : {kA, kB, kC}) {
      for (const char* y : {kA, kB, kC}) {
        if (std::string(x) != y) node(x).AddPeer(node(y));
      }
    }
  }

  NodeProcess& node(const std::string& j) { return *nodes_.at(j); }

  // Reads counts the reads of SampleNotice's subject's data that j's access log (its AccessLog
  // RPC) records, but the test's own: the harness's observers and the listings themselves.
  int Reads(const std::string& j) {
    v1::AccessLogRequest req;
    req.set_id_number(kIdNumber);
    req.set_limit(1000);
    auto reads = node(j).NewClient()->AccessLog(req);
    EXPECT_TRUE(reads.ok()) << reads.status();
    if (!reads.ok()) return -1;
    return static_cast<int>(std::count_if(
        reads->records().begin(), reads->records().end(), [](const v1::AccessRecord& r) {
          return r.what() != "access-log" && !absl::EndsWith(r.who(), "/observer");
        }));
  }

  void StartAll() {
    for (const char* j : {kA, kB, kC}) ASSERT_OK(node(j).Start());
  }

  // The case "case-q": A -> B (a1), B -> A (b1), B -> C (b2: A is no party), C -> A,B (c1);
  // "case-ab": A -> B only; "case-other": B -> A, same subject. Waits until all is delivered.
  void Exchange() {
    auto a = node(kA).NewClient();
    auto b = node(kB).NewClient();
    auto c = node(kC).NewClient();
    ASSERT_OK(a->Publish(OfCase("a1", "case-q", {kB})));
    ASSERT_OK(a->Publish(OfCase("a2", "case-ab", {kB})));
    ASSERT_OK(b->Publish(OfCase("b1", "case-q", {kA})));
    ASSERT_OK(b->Publish(OfCase("b2", "case-q", {kC})));
    ASSERT_OK(b->Publish(OfCase("b3", "case-other", {kA})));
    ASSERT_OK(c->Publish(OfCase("c1", "case-q", {kA, kB})));
    ASSERT_TRUE(WaitFor([&] {
      return node(kA).InboxTotal() == 3 &&
             node(kB).InboxTotal() == 3 &&
             node(kC).InboxTotal() == 1 &&
             node(kA).Acked("440305") == 2 &&
             node(kB).Acked("360102") == 2;
    }, absl::Seconds(20)));
  }

  // A stub of `to`'s PeerExchange presenting the certificate `prefix`.crt/.key.
  std::unique_ptr<v1::PeerExchange::Stub> PeerStub(const std::string& to, const std::string& prefix,
                                                   const std::string& ca = "") {
    auto creds = common::ChannelCredentials(
        {ca.empty() ? pki_->ca() : ca, prefix + ".crt", prefix + ".key"});
    EXPECT_OK(creds);
    return v1::PeerExchange::NewStub(grpc::CreateChannel(node(to).address(), *creds));
  }

  // Asks `to` directly as the node `as` (the test plays that node: nothing is recorded there).
  absl::StatusOr<v1::QueryAnswer> AskAs(const std::string& as, const std::string& to,
                                        const std::string& case_id, const std::string& asker = "") {
    auto stub = PeerStub(to, pki_->Node(as));
    v1::QueryRequest q;
    q.set_asker(asker.empty() ? as : asker);
    q.set_purpose(kTestPurpose);
    q.set_nonce(std::string(16, 'n') + absl::StrCat(++nonce_));
    q.set_case_id(case_id);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::QueryResponse resp;
    RETURN_IF_ERROR(common::FromGrpcStatus(stub->Query(&ctx, q, &resp)));
    auto key = common::Directory::Load(pki_->dir() + "/directory.yaml");
    if (!key.ok()) return key.status();
    auto public_key = key->Key(to);
    if (!public_key.ok()) return public_key.status();
    RETURN_IF_ERROR(common::VerifySignature(*public_key, common::kQueryAnswerContext,
                                            resp.answer().message(), resp.answer().signature()));
    v1::QueryAnswer a;
    if (!a.ParseFromString(resp.answer().message())) return absl::DataLossError("not an answer");
    if (a.request_digest() != common::Sha256(common::DeterministicBytes(q))) {
      return absl::DataLossError("the answer names another question");
    }
    return a;
  }

  static std::vector<std::string> Ids(const v1::QueryPeerResponse& r) {
    std::vector<std::string> out;
    for (const auto& n : r.notices()) out.push_back(n.notice_id());
    return out;
  }

  static std::vector<std::string> Ids(const v1::QueryAnswer& a) {
    std::vector<std::string> out;
    for (const auto& q : a.notices()) {
      v1::Notice n;
      n.ParseFromString(q.notice());
      out.push_back(n.notice_id());
    }
    return out;
  }

  // Settled waits until every node has signed a checkpoint covering every event logged so far.
  void Settled(std::vector<std::string> which) {
    for (const auto& j : which) {
      int64_t size = EventsSize(node(j));
      ASSERT_TRUE(WaitFor(
          [&] { return node(j).CheckpointSize() >= size; },
          absl::Seconds(15)))
          << j << ": no checkpoint covers " << size << " entries";
    }
  }

  // Reconcile runs `caseway audit reconcile A B EXTRA...` as the coordinator.
  RunResult Reconcile(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"reconcile", node(kA).address(), node(kB).address()};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunCommand(AuditCommand(*pki_, pki_->Auditor("coordinator"), dir_.path(), args));
  }

  // BundleOf is the path of the bundle a reconcile wrote for a row of `status` (lower case).
  static std::string BundleOf(const RunResult& r, const std::string& status) {
    for (const auto& line : absl::StrSplit(r.out, '\n')) {
      if (absl::StrContains(line, "bundle: ") && absl::StrContains(line, status)) {
        return std::string(line.substr(line.find("bundle: ") + 8));
      }
    }
    return "";
  }

  RunResult VerifyBundle(const std::string& bundle) {
    return RunCommand({BinDir() + "/caseway", "audit", "verify-bundle", bundle, "--directory",
                       pki_->dir() + "/directory.yaml"});
  }

  // Ask has node `from` ask `peer` (through Gateway.QueryPeer) about `case_id`.
  absl::StatusOr<v1::QueryPeerResponse> Ask(const std::string& from, const std::string& peer,
                                            const std::string& case_id) {
    v1::QueryPeerRequest req;
    req.set_peer(peer);
    req.set_case_id(case_id);
    return node(from).NewClient()->QueryPeer(req);
  }

  RunResult Cli(const std::string& at, std::vector<std::string> args) {
    std::vector<std::string> argv = {BinDir() + "/caseway"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (auto& f : node(at).CliFlags()) argv.push_back(f);
    return RunCommand(argv);
  }

  TempDir dir_;
  std::unique_ptr<Pki> pki_;
  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
  int nonce_ = 0;
};

TEST_F(QueryTest, APeerSeesOnlyTheNoticesItIsAPartyToAndTheAnswerIsSigned) {
  StartAll();
  Exchange();
  auto a = node(kA).NewClient();
  // Party, by case id: what B published to A, received from A, and received from C naming A.
  auto answer = Ask(kA, kB, "case-q");
  ASSERT_OK(answer);
  EXPECT_THAT(Ids(*answer), UnorderedElementsAre("a1", "b1", "c1"));  // never b2 (B -> C)
  EXPECT_EQ(answer->answer().signer(), kB);
  EXPECT_EQ(answer->parsed().answerer(), kB);
  EXPECT_EQ(answer->parsed().asker(), kA);
  EXPECT_GT(answer->log_index(), 0u);
  for (const auto& q : answer->parsed().notices()) {
    v1::Notice n;
    ASSERT_TRUE(n.ParseFromString(q.notice()));
    if (n.notice_id() == "b1") {
      EXPECT_EQ(q.role(), v1::QueryNotice::ROLE_PUBLISHED);
      EXPECT_EQ(q.seq(), 1u);
      EXPECT_TRUE(q.acknowledged());  // A receipted it
    } else {
      EXPECT_EQ(q.role(), v1::QueryNotice::ROLE_RECEIVED);
      EXPECT_FALSE(q.acknowledged());  // nobody at B has taken it from the inbox
    }
  }
  // The signature verifies with B's directory key, and not for another context.
  auto dir = common::Directory::Load(pki_->dir() + "/directory.yaml");
  ASSERT_OK(dir);
  EXPECT_OK(common::VerifySignature(*dir->Key(kB), common::kQueryAnswerContext,
                                    answer->answer().message(), answer->answer().signature()));
  EXPECT_FALSE(common::VerifySignature(*dir->Key(kB), common::kReceiptContext,
                                       answer->answer().message(), answer->answer().signature())
                   .ok());
  // By identity number: every case of the subject A is a party to, found through the index.
  v1::QueryPeerRequest by_subject;
  by_subject.set_peer(kB);
  by_subject.set_id_number(kIdNumber);
  auto subject = a->QueryPeer(by_subject);
  ASSERT_OK(subject);
  EXPECT_THAT(Ids(*subject), UnorderedElementsAre("a1", "a2", "b1", "b3", "c1"));

  // Non-party: C asking B about A and B's case gets what an unknown case gets.
  auto not_party = AskAs(kC, kB, "case-ab");
  ASSERT_OK(not_party);
  auto unknown = AskAs(kC, kB, "case-nobody-has");
  ASSERT_OK(unknown);
  EXPECT_EQ(not_party->notices_size(), 0);
  EXPECT_EQ(unknown->notices_size(), 0);
  EXPECT_EQ(not_party->truncated(), unknown->truncated());
  // C on case-q sees at B what B sent it and its own notice; never a1 or b1 (A and B only).
  auto c_view = AskAs(kC, kB, "case-q");
  ASSERT_OK(c_view);
  EXPECT_THAT(Ids(*c_view), UnorderedElementsAre("b2", "c1"));

  // A node asking as another jurisdiction is refused.
  auto spoofed = AskAs(kA, kB, "case-q", kC);
  EXPECT_EQ(spoofed.status().code(), absl::StatusCode::kPermissionDenied) << spoofed.status();
  EXPECT_EQ(common::ReasonOf(spoofed.status()), "NOT_ASKER");
  // A local client certificate calling the peer service.
  {
    auto stub = PeerStub(kB, pki_->Client(kB, "office"));
    v1::QueryRequest q;
    q.set_asker(kB);
    q.set_purpose(kTestPurpose);
    q.set_nonce(std::string(16, 'x'));
    q.set_case_id("case-q");
    grpc::ClientContext ctx;
    v1::QueryResponse resp;
    absl::Status s = common::FromGrpcStatus(stub->Query(&ctx, q, &resp));
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  }
  // Another federation's node (its own CA) never gets an answer: B refuses its certificate at
  // the handshake. The caller trusts B's CA, so only B's refusal can fail the call.
  {
    Pki foreign(dir_.path() + "/foreign", "fed.other");
    const std::string prefix = foreign.Node(kA);
    auto stub = PeerStub(kB, prefix);
    v1::QueryRequest q;
    q.set_asker(kA);
    q.set_purpose(kTestPurpose);
    q.set_nonce(std::string(16, 'f'));
    q.set_case_id("case-q");
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::QueryResponse resp;
    grpc::Status s = stub->Query(&ctx, q, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
    EXPECT_FALSE(resp.has_answer());
  }
  // Bad input names the field.
  {
    auto stub = PeerStub(kB, pki_->Node(kA));
    v1::QueryRequest q;
    q.set_asker(kA);
    q.set_purpose(kTestPurpose);
    q.set_nonce("short");
    grpc::ClientContext ctx;
    v1::QueryResponse resp;
    absl::Status s = common::FromGrpcStatus(stub->Query(&ctx, q, &resp));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    std::vector<std::string> fields;
    for (const auto& v : common::ViolationsOf(s)) fields.push_back(v.field);
    EXPECT_THAT(fields, UnorderedElementsAre("nonce", "case_id"));
  }
  // Asking a jurisdiction that is not a peer, through the gateway.
  v1::QueryPeerRequest stranger;
  stranger.set_peer("110101");
  stranger.set_case_id("case-q");
  auto refused = a->QueryPeer(stranger);
  EXPECT_EQ(common::ReasonOf(refused.status()), "NOT_A_PEER") << refused.status();
  // The placeholder identity number names no one: asking by it is refused.
  v1::QueryPeerRequest placeholder;
  placeholder.set_peer(kB);
  placeholder.set_id_number("000000000000000000");
  refused = a->QueryPeer(placeholder);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  ASSERT_EQ(common::ViolationsOf(refused.status()).size(), 1u);
  EXPECT_EQ(common::ViolationsOf(refused.status())[0].field, "id_number");

  // The logs hold digests only: B's answer entries never carry the identity number, and neither
  // node's log file names it.
  for (const char* j : {kA, kB}) {
    for (const std::string& bytes : node(j).LogBytes()) {
      EXPECT_EQ(bytes.find(kIdNumber), std::string::npos) << j;
    }
    EXPECT_THAT(node(j).log(), Not(HasSubstr(kIdNumber)));
  }
  EXPECT_EQ(node(kB).Count("SELECT count(*) FROM case_index "
                           "WHERE CAST(key AS TEXT) LIKE '%11010519491231002X%'"),
            0);
}

TEST_F(QueryTest, EachPeerIsHeldToItsRateWhileOthersAreAnswered) {
  node(kB).set_extra_yaml("limits:\n  peer_queries_per_minute: 60\n");  // bursts of 10
  StartAll();
  int answered = 0, refused = 0;
  for (int i = 0; i < 15; ++i) {
    auto r = AskAs(kA, kB, "case-q");
    if (r.ok()) {
      ++answered;
    } else {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
      EXPECT_EQ(common::ReasonOf(r.status()), "QUERY_RATE_EXCEEDED");
      ++refused;
    }
  }
  // Ten in the burst, and at most one more refilled while the loop ran (1 a second).
  EXPECT_GE(answered, 10);
  EXPECT_LE(answered, 11);
  EXPECT_GE(refused, 4);
  // Another peer is still answered.
  EXPECT_OK(AskAs(kC, kB, "case-q"));
}

TEST_F(QueryTest, QueriesAndAnswersAreReconciledFromBothLogs) {
  StartAll();
  Exchange();
  ASSERT_OK(Ask(kA, kB, "case-q"));
  ASSERT_OK(Ask(kA, kB, "case-ab"));
  // A's log records the question with B's entry; B's the answer: same digests.
  Settled({kA, kB});
  RunResult r = Reconcile();
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("ANSWERED +2 +0 +2"));

  // B answers a question A's log never records (the test plays A's node): once older than
  // --grace, QUESTION_NOT_LOGGED, with a bundle that verifies offline.
  ASSERT_OK(AskAs(kA, kB, "case-q"));
  Settled({kA, kB});
  r = Reconcile({"--grace", "0s"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("QUESTION_NOT_LOGGED +1 +0 +1"));
  const std::string bundle = BundleOf(r, "question_not_logged");
  ASSERT_FALSE(bundle.empty()) << r.out;
  RunResult v = VerifyBundle(bundle);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_THAT(v.out, HasSubstr("QUERY_ANSWERED"));
  // The signed answers A keeps are served to auditors.
  EXPECT_EQ(node(kA).Evidence(v1::Evidence::KIND_QUERY_ANSWER_RECEIVED, kB).size(), 2u);
}

TEST_F(QueryTest, ACaseTimelineFollowsTheCaseAcrossThreeNodes) {
  StartAll();
  Exchange();
  // B owes A nothing yet; A's office takes b1 from its inbox so the timeline shows it consumed.
  auto a = node(kA).NewClient();
  client::InboxOptions options;
  options.ack = true;
  ASSERT_OK(a->Inbox(options, [](const v1::InboxItem&) { return true; }));
  auto local = a->Case("case-q");
  ASSERT_OK(local);
  std::vector<std::string> ids;
  for (const auto& e : local->events()) {
    ids.push_back(e.notice().notice_id());
    EXPECT_EQ(e.holder(), kA);
    if (e.notice().notice_id() == "a1") {
      EXPECT_EQ(e.role(), v1::QueryNotice::ROLE_PUBLISHED);
      ASSERT_EQ(e.deliveries_size(), 1);
      EXPECT_EQ(e.deliveries(0).destination(), kB);
      EXPECT_TRUE(e.deliveries(0).receipted());
    } else {
      EXPECT_EQ(e.role(), v1::QueryNotice::ROLE_RECEIVED);
      EXPECT_TRUE(e.consumed());
    }
  }
  EXPECT_THAT(ids, UnorderedElementsAre("a1", "b1", "c1"));

  RunResult r = Cli(kA, {"case", "case-q", "--peers"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("case case-q: 3 notices (peers asked: 360111, 440305)"));
  EXPECT_THAT(r.out, HasSubstr("at 360102: sent to 440305 seq 1, receipted"));
  EXPECT_THAT(r.out, HasSubstr("at 440305: received seq 1, not yet taken from the inbox"));
  EXPECT_THAT(r.out, HasSubstr("at 360111: sent to 360102 seq 1, receipted"));
  EXPECT_THAT(r.out, Not(HasSubstr("b2")));  // B -> C: A is no party to it
  // JSON lines: one event per holder of each notice, oldest first.
  r = Cli(kA, {"case", "case-q", "--peers", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::vector<std::string> holders;
  for (const auto& line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
    v1::CaseEvent e;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(std::string(line), &e).ok()) << line;
    holders.push_back(absl::StrCat(e.holder(), ":", e.notice().notice_id()));
  }
  EXPECT_THAT(holders, UnorderedElementsAre("360102:a1", "440305:a1", "360102:b1", "440305:b1",
                                            "360102:c1", "440305:c1", "360111:c1"));
  // `caseway query` prints the peer's signed answer.
  r = Cli(kA, {"query", kB, "--subject", kIdNumber});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("440305 answered"));
  EXPECT_THAT(r.out, HasSubstr("5 notices"));
  r = Cli(kA, {"query", kB, "--case", "case-q"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("440305 answered"));
  EXPECT_THAT(r.out, HasSubstr("b1"));
  EXPECT_THAT(r.out, Not(HasSubstr("b2")));  // B -> C
  r = Cli(kA, {"query", kB});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  r = Cli(kA, {"query", kB, "--case", "bad case id"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("case_id: only letters"));
}

// What a reconcile finds is shown offline by its bundle: an answerer whose log names another
// answer than the one it signed (ANSWER_NOT_LOGGED, with the contradicting entry proven), and an
// asker whose kept answer no longer verifies (UNSUPPORTED).
TEST_F(QueryTest, ContradictedAndUnverifiableAnswersAreProvenOffline) {
  node(kB).set_env("CASEWAY_FAULTS=forge_query_answered=1");
  StartAll();
  Exchange();
  ASSERT_OK(Ask(kA, kB, "case-q"));  // the answer verifies: only B's log lies
  Settled({kA, kB});
  RunResult r = Reconcile();
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("ANSWER_NOT_LOGGED +1 +0 +1"));
  std::string bundle = BundleOf(r, "answer_not_logged");
  ASSERT_FALSE(bundle.empty()) << r.out;
  RunResult v = VerifyBundle(bundle);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_THAT(v.out, HasSubstr("entry of its signed log is a KIND_QUERY_ANSWERED entry, not the answer"));

  // A's kept answer altered (its signature broken): A's record is no longer supported.
  node(kA).Stop();
  node(kA).Exec("UPDATE evidence SET signature = " + node(kA).Bytes(std::string(128, '0')) +
                " WHERE kind = 5");
  ASSERT_OK(node(kA).Start());
  r = Reconcile();
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  bundle = BundleOf(r, "unsupported");
  ASSERT_FALSE(bundle.empty()) << r.out;
  v = VerifyBundle(bundle);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_THAT(v.out, HasSubstr("BAD  answer not a valid answer of 440305 to 360102"));
}

// An answer that does not verify reaches no office and is recorded nowhere at the asker:
// QueryPeer answers DATA_LOSS, and the CLI says why.
TEST_F(QueryTest, AnAnswerThatDoesNotVerifyIsRefusedAndNotRecorded) {
  node(kB).set_env("CASEWAY_FAULTS=bad_query_answer_signature=1");
  StartAll();
  Exchange();
  const size_t kept = node(kA).Evidence(v1::Evidence::KIND_QUERY_ANSWER_RECEIVED, kB).size();
  const int reads = Reads(kA);
  auto asked = Ask(kA, kB, "case-q");
  EXPECT_EQ(asked.status().code(), absl::StatusCode::kDataLoss) << asked.status();
  EXPECT_THAT(std::string(asked.status().message()), HasSubstr("440305's answer does not verify: bad signature"));
  EXPECT_EQ(node(kA).Evidence(v1::Evidence::KIND_QUERY_ANSWER_RECEIVED, kB).size(), kept);
  EXPECT_EQ(Reads(kA), reads) << "the refused answer was read by no one";
  // The fault hit once: the next answer verifies and is kept.
  RunResult r = Cli(kA, {"query", kB, "--case", "case-q"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(node(kA).Evidence(v1::Evidence::KIND_QUERY_ANSWER_RECEIVED, kB).size(), kept + 1);
  EXPECT_EQ(Reads(kA), reads + 1) << "the office read the verified answer";
}

}  // namespace
}  // namespace caseway::testing
