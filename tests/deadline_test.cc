// Deadlines, replies and the to-do list through real nodes whose clocks the test moves
// (NodeProcess::SetClockOffset): reply_due set from the federation policy and recomputed by the
// receiver, items overdue after a (simulated) fortnight, cleared by a feedback, a void or a
// correction; replies that name nothing known are refused (publisher) or flagged (receiver); the
// policy's digest in the log and in the peers' status.
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "caseway/v1/exchange_log.pb.h"
#include "common/digest.h"
#include "common/policy.h"
#include "common/tls_diagnosis.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;

constexpr char kA[] = "360102";  // Nanchang, Jiangxi
constexpr char kB[] = "440305";  // Shenzhen, Guangdong
constexpr char kC[] = "360111";  // Nanchang, Jiangxi

// The federation's policy for these tests: urgent requests 15 days, others 30, first-child
// registration 15 working days, on a calendar with a holiday week and two make-up days.
constexpr char kPolicy[] = R"(version: deadline-test-1
rules:
  - {kind: verification_request, priority: PRIORITY_SUBJECT, reply: {days: 15}}
  - {kind: verification_request, reply: {days: 30}}
  - {kind: birth_service_registration, reply: {days: 15, working_days: true}}
targets: [{year: 2026, intra_province: 85, inter_province: 80}]
calendar:
  holidays: [2026-10-01, 2026-10-02, 2026-10-05, 2026-10-06, 2026-10-07]
  workdays: [2026-09-27, 2026-10-10]
)";

absl::Time Cst(int y, int m, int d, int hh = 0, int mm = 0) {
  return absl::FromCivil(absl::CivilSecond(y, m, d, hh, mm, 0), common::ChinaStandardTime());
}

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(t));
}

v1::Notice Request(const std::string& id, const std::vector<std::string>& dests,
                   v1::Priority priority = v1::PRIORITY_SUBJECT) {
  v1::Notice n = SampleNotice(id, dests);
  n.clear_residence_change();
  n.set_priority(priority);
  auto* vr = n.mutable_verification_request();
  vr->set_request_id("vr-" + id);
  vr->add_items("marital status");
  return n;
}

v1::Notice Feedback(const std::string& id, const std::string& answers,
                    const std::vector<std::string>& dests) {
  v1::Notice n = SampleNotice(id, dests);
  n.clear_residence_change();
  n.set_in_reply_to(answers);
  n.mutable_feedback()->set_outcome(v1::Feedback::OUTCOME_CONFIRMED);
  return n;
}

class DeadlineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<Pki>(dir_.path() + "/pki", "fed.test");
    {
      std::ofstream(dir_.path() + "/policy.yaml") << kPolicy;
    }
    for (const char* j : {kA, kB, kC}) {
      nodes_[j] = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), j);
      nodes_[j]->set_extra_yaml(absl::StrCat("policy_file: ", dir_.path(), "/policy.yaml\n"));
      nodes_[j]->SetClockOffset(absl::ZeroDuration());
    }
    for (auto& [j, n] : nodes_) {
      for (auto& [k, p] : nodes_) {
        if (j != k) n->AddPeer(*p);
      }
    }
  }

  void StartAll() {
    for (auto& [j, n] : nodes_) ASSERT_OK(n->Start());
  }

  // Todo asks `node`'s gateway for its to-do list.
  v1::TodoResponse Todo(const std::string& node, v1::TodoRequest req = {}) {
    auto r = nodes_[node]->NewClient()->Todo(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::TodoResponse();
  }

  // Item finds the to-do item of `notice_id` (empty item when absent).
  static v1::TodoItem Item(const v1::TodoResponse& todo, const std::string& notice_id,
                           const std::string& peer = "") {
    for (const auto& i : todo.items()) {
      if (i.notice_id() == notice_id && (peer.empty() || i.peer() == peer)) return i;
    }
    return v1::TodoItem();
  }

  static v1::TodoRequest All() {
    v1::TodoRequest r;
    r.set_include_cleared(true);
    return r;
  }

  bool Received(const std::string& node, int64_t count) {
    return WaitFor(
        [&] { return nodes_[node]->InboxTotal() >= count; },
        absl::Seconds(15));
  }

  TempDir dir_;
  std::unique_ptr<Pki> pki_;
  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
};

TEST_F(DeadlineTest, AnUrgentRequestIsOwedFifteenDaysThenOverdueUntilAnswered) {
  StartAll();
  auto a = nodes_[kA]->NewClient();
  auto b = nodes_[kB]->NewClient();
  const absl::Time before = absl::Now();
  ASSERT_OK(a->Publish(Request("req-1", {kB})));
  ASSERT_TRUE(Received(kB, 1));

  // B owes the reply; A is owed it. Both by the end of the 15th day (CST) after today.
  const absl::Time due = common::EndOfDay(common::DayOf(before) + 15);
  v1::TodoItem owed = Item(Todo(kB), "req-1");
  EXPECT_EQ(owed.side(), v1::TodoRequest::SIDE_OWED_BY_US);
  EXPECT_EQ(owed.peer(), kA);
  EXPECT_EQ(owed.origin(), kA);
  EXPECT_EQ(owed.kind(), "verification_request");
  EXPECT_EQ(owed.priority(), v1::PRIORITY_SUBJECT);
  EXPECT_EQ(ToTime(owed.due()), due);
  EXPECT_EQ(ToTime(owed.stated_due()), due) << "the sender set reply_due from the same policy";
  EXPECT_FALSE(owed.due_mismatch());
  EXPECT_FALSE(owed.overdue());
  EXPECT_GT(owed.working_days_left(), 5);
  v1::TodoItem waiting = Item(Todo(kA), "req-1");
  EXPECT_EQ(waiting.side(), v1::TodoRequest::SIDE_OWED_TO_US);
  EXPECT_EQ(waiting.peer(), kB);
  EXPECT_EQ(ToTime(waiting.due()), due);

  // Sixteen days later at B (no sleeping: B's clock moves), the item is overdue.
  nodes_[kB]->SetClockOffset(absl::Hours(24 * 16));
  ASSERT_TRUE(WaitFor([&] { return Item(Todo(kB), "req-1").overdue(); }, absl::Seconds(5)));
  v1::TodoResponse late = Todo(kB);
  EXPECT_EQ(late.owed_by_us(), 1u);
  EXPECT_EQ(late.overdue_by_us(), 1u);
  EXPECT_LT(Item(late, "req-1").working_days_left(), 0);
  v1::TodoRequest overdue_only;
  overdue_only.set_overdue_only(true);
  EXPECT_EQ(Todo(kB, overdue_only).items_size(), 1);
  v1::TodoRequest other_kind;
  other_kind.set_kind("birth");
  EXPECT_EQ(Todo(kB, other_kind).items_size(), 0);

  // B answers (naming only the id: the node finds the origin); both sides clear the item.
  auto fb = b->Publish(Feedback("fb-1", "req-1", {kA}));
  ASSERT_OK(fb);
  v1::TodoResponse after = Todo(kB, All());
  EXPECT_EQ(after.owed_by_us(), 0u);
  EXPECT_EQ(Item(after, "req-1").state(), v1::TodoItem::STATE_ANSWERED);
  EXPECT_EQ(Item(after, "req-1").cleared_by(), "fb-1");
  ASSERT_TRUE(Received(kA, 1));
  v1::TodoResponse at_a = Todo(kA, All());
  EXPECT_EQ(at_a.owed_to_us(), 0u);
  EXPECT_EQ(Item(at_a, "req-1").state(), v1::TodoItem::STATE_ANSWERED);

  // A retry of the feedback (the node filled in in_reply_to_origin) is a duplicate, and so is a
  // retry of the request two days later, although reply_due would now be computed otherwise.
  auto again = b->Publish(Feedback("fb-1", "req-1", {kA}));
  ASSERT_OK(again);
  EXPECT_TRUE(again->duplicate());
  nodes_[kA]->SetClockOffset(absl::Hours(48));
  absl::SleepFor(absl::Milliseconds(50));
  auto retry = a->Publish(Request("req-1", {kB}));
  ASSERT_OK(retry);
  EXPECT_TRUE(retry->duplicate());
}

TEST_F(DeadlineTest, WorkingDayDeadlinesFollowTheCalendarAndTheReceiverFlagsAMismatch) {
  // Both nodes live on 2026-09-30 10:00 CST, the day before the holiday week.
  const absl::Duration to_sept30 = Cst(2026, 9, 30, 10) - absl::Now();
  nodes_[kA]->SetClockOffset(to_sept30);
  nodes_[kB]->SetClockOffset(to_sept30);
  // C receives eight days later than A sends (its clock is a week and a day ahead).
  nodes_[kC]->SetClockOffset(to_sept30 + absl::Hours(24 * 8));
  StartAll();
  v1::Notice n = SampleNotice("bsr-1", {kB, kC});
  n.clear_residence_change();
  auto* r = n.mutable_birth_service_registration();
  r->set_spouse_id_number("11010519491231002X");
  r->set_marriage_certificate_number("J-1");
  r->set_registration_number("R-1");
  r->mutable_registration_date()->set_year(2026);
  r->mutable_registration_date()->set_month(9);
  r->mutable_registration_date()->set_day(20);
  r->set_child_order(1);
  ASSERT_OK(nodes_[kA]->NewClient()->Publish(n));
  ASSERT_TRUE(Received(kB, 1));
  ASSERT_TRUE(Received(kC, 1));
  // 15 working days after Wed 30 Sep: Oct 8, 9, Sat 10 (make-up), 12-16, 19-23, 26, 27.
  v1::TodoItem at_b = Item(Todo(kB), "bsr-1");
  EXPECT_EQ(ToTime(at_b.due()), Cst(2026, 10, 27, 23, 59) + absl::Seconds(59));
  EXPECT_EQ(ToTime(at_b.stated_due()), ToTime(at_b.due()));
  EXPECT_FALSE(at_b.due_mismatch());
  EXPECT_EQ(at_b.working_days_left(), 15);
  // C received it on Oct 8: its deadline runs to Oct 28, and the sender's differs.
  v1::TodoItem at_c = Item(Todo(kC), "bsr-1");
  EXPECT_EQ(ToTime(at_c.due()), Cst(2026, 10, 28, 23, 59) + absl::Seconds(59));
  EXPECT_EQ(ToTime(at_c.stated_due()), Cst(2026, 10, 27, 23, 59) + absl::Seconds(59));
  EXPECT_TRUE(at_c.due_mismatch());
}

TEST_F(DeadlineTest, RepliesMustNameANoticeTheNodeKnows) {
  StartAll();
  auto a = nodes_[kA]->NewClient();
  auto b = nodes_[kB]->NewClient();
  auto c = nodes_[kC]->NewClient();
  // A feedback to nothing received, a void of nothing published: refused, nothing stored.
  EXPECT_THAT(b->Publish(Feedback("fb-x", "no-such", {kA})),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("notice.in_reply_to: no notice \"no-such\" was received from a "
                                 "peer (a feedback answers a received notice)")));
  v1::Notice v = SampleNotice("void-x", {kA});
  v.clear_residence_change();
  v.set_in_reply_to("never-published");
  v.mutable_void_()->set_reason("mistake");
  EXPECT_THAT(b->Publish(v), StatusIs(absl::StatusCode::kFailedPrecondition,
                                      HasSubstr("notice.in_reply_to: no notice \"never-published\" "
                                                "was published by this node")));
  // The same id from two origins: the feedback must say which one it answers.
  ASSERT_OK(a->Publish(Request("same-id", {kB})));
  ASSERT_OK(c->Publish(Request("same-id", {kB})));
  ASSERT_TRUE(Received(kB, 2));
  EXPECT_THAT(b->Publish(Feedback("fb-2", "same-id", {kA, kC})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("notice.in_reply_to_origin: required: notice \"same-id\" was "
                                 "received from 360102 and 360111")));
  v1::Notice to_c = Feedback("fb-2", "same-id", {kA});
  to_c.set_in_reply_to_origin(kC);
  EXPECT_THAT(b->Publish(to_c), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("notice.destinations: must include 360111, "
                                                   "the origin of the notice answered")));
  to_c.add_destinations(kC);
  ASSERT_OK(b->Publish(to_c));
  // In a batch, the failing notice is named and nothing is stored.
  std::vector<v1::Notice> batch = {Request("ok-1", {kA}), Feedback("fb-3", "nothing", {kA})};
  EXPECT_THAT(b->PublishBatch(batch),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("notices[1].in_reply_to")));
  EXPECT_EQ(nodes_[kB]->Published(), 1) << "only fb-2";
  v1::TodoResponse todo = Todo(kB, All());
  EXPECT_EQ(Item(todo, "same-id", kC).state(), v1::TodoItem::STATE_ANSWERED);
  EXPECT_EQ(Item(todo, "same-id", kA).state(), v1::TodoItem::STATE_OPEN);
}

TEST_F(DeadlineTest, VoidsAndCorrectionsChangeWhatIsOwedAndUnknownReferencesAreFlagged) {
  StartAll();
  auto a = nodes_[kA]->NewClient();
  auto b = nodes_[kB]->NewClient();
  ASSERT_OK(a->Publish(Request("r-void", {kB}, v1::PRIORITY_NORMAL)));
  ASSERT_OK(a->Publish(Request("r-old", {kB}, v1::PRIORITY_NORMAL)));
  // Y goes to C only; a void of it sent to B names a notice B never received.
  ASSERT_OK(a->Publish(Request("y-c-only", {kC})));
  v1::Notice v = SampleNotice("void-1", {kB});
  v.clear_residence_change();
  v.set_in_reply_to("r-void");
  v.mutable_void_()->set_reason("sent by mistake");
  ASSERT_OK(a->Publish(v));
  v1::Notice corr = Request("r-new", {kB}, v1::PRIORITY_NORMAL);
  corr.set_in_reply_to("r-old");
  corr.set_revision(1);
  ASSERT_OK(a->Publish(corr));
  v1::Notice stray = SampleNotice("void-2", {kB, kC});
  stray.clear_residence_change();
  stray.set_in_reply_to("y-c-only");
  stray.mutable_void_()->set_reason("retracted");
  ASSERT_OK(a->Publish(stray));
  ASSERT_TRUE(Received(kB, 5));

  v1::TodoResponse todo = Todo(kB, All());
  EXPECT_EQ(Item(todo, "r-void").state(), v1::TodoItem::STATE_VOIDED);
  EXPECT_EQ(Item(todo, "r-void").cleared_by(), "void-1");
  EXPECT_EQ(Item(todo, "r-old").state(), v1::TodoItem::STATE_SUPERSEDED);
  EXPECT_EQ(Item(todo, "r-new").state(), v1::TodoItem::STATE_OPEN);
  EXPECT_EQ(todo.owed_by_us(), 1u) << "only the correction is owed";
  ASSERT_EQ(todo.anomalies_size(), 1);
  EXPECT_EQ(todo.anomalies(0).notice_id(), "void-2");
  EXPECT_EQ(todo.anomalies(0).problem(),
            "a void names 360102/y-c-only, which this node never received");
  // The sender's side follows: r-void voided, r-old superseded by r-new.
  v1::TodoResponse at_a = Todo(kA, All());
  EXPECT_EQ(Item(at_a, "r-void", kB).state(), v1::TodoItem::STATE_VOIDED);
  EXPECT_EQ(Item(at_a, "r-old", kB).state(), v1::TodoItem::STATE_SUPERSEDED);

  // A reply to the corrected request answers the correction.
  ASSERT_OK(b->Publish(Feedback("fb-old", "r-old", {kA})));
  todo = Todo(kB, All());
  EXPECT_EQ(Item(todo, "r-new").state(), v1::TodoItem::STATE_ANSWERED);
  EXPECT_EQ(Item(todo, "r-new").cleared_by(), "fb-old");
  EXPECT_EQ(todo.owed_by_us(), 0u);
}

TEST_F(DeadlineTest, ThePolicyIsLoggedAndAPeerRunningAnotherIsReported) {
  // C runs another policy.
  {
    std::ofstream(dir_.path() + "/other.yaml")
        << "version: other\ntargets: [{year: 2026, intra_province: 90, inter_province: 90}]\n";
  }
  nodes_[kC]->set_extra_yaml(absl::StrCat("policy_file: ", dir_.path(), "/other.yaml\n"));
  StartAll();
  auto ours = common::Policy::Load(dir_.path() + "/policy.yaml");
  ASSERT_OK(ours.status());
  auto status = nodes_[kA]->NewClient()->Status();
  ASSERT_OK(status);
  EXPECT_EQ(status->policy_version(), "deadline-test-1");
  EXPECT_EQ(status->policy_digest(), ours->DigestHex());
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = nodes_[kA]->NewClient()->Status();
        if (!s.ok()) return false;
        int reported = 0;
        for (const auto& sub : s->subscriptions()) {
          if (sub.peer_policy_digest().empty()) return false;
          reported += sub.policy_mismatch() ? (sub.origin() == kC ? 1 : 100) : 0;
        }
        return reported == 1;
      },
      absl::Seconds(15)));
  EXPECT_THAT(nodes_[kA]->log(), HasSubstr("peer runs another federation policy"));

  // The log's first entry records the policy; a restart with the same one adds nothing, a new
  // policy adds an entry.
  auto policy_entries = [&](NodeProcess& n) {
    std::vector<std::string> digests;
    for (const auto& bytes : n.LogBytes()) {
      v1::LogEntry e;
      if (e.ParseFromString(bytes) && e.kind() == v1::LogEntry::KIND_POLICY) {
        digests.push_back(common::ToHex(e.digest()));
      }
    }
    return digests;
  };
  EXPECT_EQ(policy_entries(*nodes_[kA]), std::vector<std::string>{ours->DigestHex()});
  nodes_[kA]->Stop();
  ASSERT_OK(nodes_[kA]->Start());
  EXPECT_EQ(policy_entries(*nodes_[kA]).size(), 1u);
  nodes_[kA]->Stop();
  nodes_[kA]->set_extra_yaml(absl::StrCat("policy_file: ", dir_.path(), "/other.yaml\n"));
  ASSERT_OK(nodes_[kA]->Start());
  auto other = common::Policy::Load(dir_.path() + "/other.yaml");
  ASSERT_OK(other.status());
  EXPECT_EQ(policy_entries(*nodes_[kA]),
            (std::vector<std::string>{ours->DigestHex(), other->DigestHex()}));
}

TEST_F(DeadlineTest, ABadPolicyFileStopsTheNodeWithTheFieldNamed) {
  {
    std::ofstream(dir_.path() + "/bad.yaml") << "version: bad\ntargets: [{year: 2026}]\n"
                                                "rules: [{kind: verification_request, reply: {days: 400}}]\n";
  }
  nodes_[kA]->set_extra_yaml(absl::StrCat("policy_file: ", dir_.path(), "/bad.yaml\n"));
  // The node refuses to start (the harness writes the configuration at Start)...
  EXPECT_FALSE(nodes_[kA]->Start().ok());
  EXPECT_THAT(nodes_[kA]->log(), HasSubstr("bad.yaml: rules[0].reply.days: 400 is not in 1..366"));
  // ...and --check says why, with exit status 2.
  RunResult check = RunCommand({BinDir() + "/caseway-node", "--config", nodes_[kA]->config_path(), "--check"});
  EXPECT_EQ(check.exit_code, 2);
  EXPECT_THAT(check.err, HasSubstr("bad.yaml: rules[0].reply.days: 400 is not in 1..366"));
}

TEST_F(DeadlineTest, ClockOffsetsToPeersAreMeasuredShownAndLogged) {
  nodes_[kB]->SetClockOffset(absl::Minutes(2));  // B runs two minutes ahead (bound: 30 s)
  ASSERT_OK(nodes_[kA]->Start());
  ASSERT_OK(nodes_[kB]->Start());
  auto subscription = [&](const std::string& node, const std::string& origin) {
    v1::StatusResponse::Subscription out;
    auto s = nodes_[node]->NewClient()->Status();
    if (s.ok()) {
      for (const auto& sub : s->subscriptions()) {
        if (sub.origin() == origin) out = sub;
      }
    }
    return out;
  };
  ASSERT_TRUE(WaitFor([&] { return subscription(kA, kB).clock_offset_exceeded(); }, absl::Seconds(15)));
  const int64_t ahead = subscription(kA, kB).clock_offset_ms();
  EXPECT_GT(ahead, 110000);
  EXPECT_LT(ahead, 130000);
  ASSERT_TRUE(WaitFor([&] { return subscription(kB, kA).clock_offset_exceeded(); }, absl::Seconds(15)));
  EXPECT_LT(subscription(kB, kA).clock_offset_ms(), -110000);
  EXPECT_THAT(nodes_[kA]->log(), HasSubstr("clock offset to peer beyond exchange.max_clock_offset"));
  // `caseway status` shows it too.
  RunResult status = RunCommand([&] {
    std::vector<std::string> argv = {BinDir() + "/caseway", "status"};
    for (auto& f : nodes_[kA]->CliFlags()) argv.push_back(f);
    return argv;
  }());
  EXPECT_THAT(status.out, ::testing::ContainsRegex("clock: the peer.s clock is (1m5[0-9]s|2m[0-9]*s?) ahead of ours"));

  auto offsets = [&](NodeProcess& n) {
    std::vector<std::pair<bool, int64_t>> out;
    for (const auto& bytes : n.LogBytes()) {
      v1::LogEntry e;
      if (e.ParseFromString(bytes) && e.kind() == v1::LogEntry::KIND_CLOCK_OFFSET) {
        EXPECT_EQ(e.peer(), kB);
        out.push_back({e.clock_offset_exceeded(), e.clock_offset_micros() / 1000000});
      }
    }
    return out;
  };
  ASSERT_TRUE(WaitFor([&] { return offsets(*nodes_[kA]).size() == 1; }, absl::Seconds(5)));
  EXPECT_TRUE(offsets(*nodes_[kA])[0].first);
  EXPECT_NEAR(offsets(*nodes_[kA])[0].second, 120, 10);
  // A's clock catches up: back within the bound, and logged as such.
  nodes_[kA]->SetClockOffset(absl::Minutes(2));
  ASSERT_TRUE(WaitFor([&] { return !subscription(kA, kB).clock_offset_exceeded(); }, absl::Seconds(15)));
  ASSERT_TRUE(WaitFor([&] { return offsets(*nodes_[kA]).size() == 2; }, absl::Seconds(5)));
  EXPECT_FALSE(offsets(*nodes_[kA])[1].first);
  EXPECT_LT(std::abs(subscription(kA, kB).clock_offset_ms()), 10000);
}

TEST_F(DeadlineTest, ANoticeFromTheFutureOfTheReceiversClockIsStoredAndFlagged) {
  nodes_[kB]->SetClockOffset(absl::Minutes(10));  // B runs ten minutes ahead
  ASSERT_OK(nodes_[kA]->Start());
  ASSERT_OK(nodes_[kB]->Start());
  auto b = nodes_[kB]->NewClient();
  // Two minutes ahead of B's clock (its gateway accepts it), twelve ahead of A's.
  v1::Notice ahead = SampleNotice("from-the-future", {kA});
  *ahead.mutable_occurred_at() = TimeUtil::MicrosecondsToTimestamp(
      absl::ToUnixMicros(absl::Now() + absl::Minutes(12)));
  ASSERT_OK(b->Publish(ahead));
  v1::Notice now = SampleNotice("on-time", {kA});
  *now.mutable_occurred_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(absl::Now()));
  ASSERT_OK(b->Publish(now));
  ASSERT_TRUE(Received(kA, 2)) << "stored: refusing it would block the channel";
  v1::TodoResponse todo = Todo(kA, All());
  ASSERT_EQ(todo.anomalies_size(), 1);
  EXPECT_EQ(todo.anomalies(0).notice_id(), "from-the-future");
  EXPECT_EQ(todo.anomalies(0).peer(), kB);
  EXPECT_THAT(todo.anomalies(0).problem(),
              ::testing::MatchesRegex("occurred_at is 1[12]m[0-9]+s in the future by this node's "
                                      "clock \\(more than 5m\\); the origin's clock may be ahead"));
}

TEST_F(DeadlineTest, ANodeWhoseClockIsBeforeItsCertificatesSaysSo) {
  nodes_[kA]->SetClockOffset(-absl::Hours(72));  // its certificates were made a moment ago
  ASSERT_OK(nodes_[kA]->Start());
  EXPECT_THAT(nodes_[kA]->log(), HasSubstr("TLS will fail because of time"));
  EXPECT_THAT(nodes_[kA]->log(), HasSubstr("is before the certificate's validity"));
}

TEST_F(DeadlineTest, AClientWhoseHandshakeFailsIsToldWhy) {
  // gRPC says only UNAVAILABLE: the client library finds out why the handshake fails (a refusal
  // of a certificate that chains is in HostileTest.RevokedCertificateIsRefusedOnNewAndExistingConnectionsAndItsStreamsEnd).
  auto status = [&](NodeProcess& n) {
    std::vector<std::string> argv = {BinDir() + "/caseway", "status"};
    for (auto& f : n.CliFlags()) argv.push_back(f);
    return RunCommand(argv);
  };
  // A healthy node: no diagnosis to add, and none is made up.
  ASSERT_OK(nodes_[kC]->Start());
  RunResult fine = status(*nodes_[kC]);
  EXPECT_EQ(fine.exit_code, 0) << fine.err;
  // A refusal by OpenSSL itself (a certificate of another federation's CA) is named by its
  // alert, without a word about clocks.
  Pki other(dir_.path() + "/other-pki", "other.test");
  const std::string stranger = other.Client(kC, "stranger");
  RunResult refused = RunCommand({BinDir() + "/caseway", "status", "--address",
                                  nodes_[kC]->address(), "--ca", pki_->ca(), "--cert",
                                  stranger + ".crt", "--key", stranger + ".key"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("without accepting this client's certificate: it is not "
                                     "issued by the federation CA in"));
  EXPECT_THAT(refused.err, ::testing::Not(HasSubstr("clock")));
  // This machine's own clock before this client's certificate: said before anything else.
  const std::string mine = pki_->Client(kC, "default");
  const std::string why = common::DiagnoseHandshake(
      nodes_[kC]->address(), common::TlsFiles{pki_->ca(), mine + ".crt", mine + ".key"},
      absl::Now() - absl::Hours(72));
  EXPECT_THAT(why, ::testing::StartsWith("this client's certificate (" + mine + ".crt): this clock ("));
  EXPECT_THAT(why, HasSubstr("is before the certificate's validity"));
  EXPECT_EQ(common::DiagnoseHandshake(nodes_[kC]->address(),
                                      common::TlsFiles{pki_->ca(), mine + ".crt", mine + ".key"},
                                      absl::Now()),
            "")
      << "a handshake that works has nothing to diagnose";
}

}  // namespace
}  // namespace caseway::testing
