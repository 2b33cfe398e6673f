// The indicator arithmetic on hand-built histories with known answers (docs/policy.md,
// "Indicators").
#include "client/audit/assessment.h"

#include <gtest/gtest.h>

namespace caseway::client::audit {
namespace {

constexpr char kX[] = "360102";  // Jiangxi
constexpr char kY[] = "440305";  // Guangdong: inter-province with X
constexpr char kC[] = "360111";  // Jiangxi: intra-province with X

constexpr char kPolicy[] = R"(version: assessment-test
rules:
  - {kind: verification_request, priority: PRIORITY_SUBJECT, reply: {days: 15}}
  - {kind: birth_service_registration, reply: {days: 15, working_days: true}}
targets: [{year: 2026, intra_province: 85, inter_province: 80}]
calendar:
  holidays: [2026-10-01, 2026-10-02, 2026-10-05, 2026-10-06, 2026-10-07]
  workdays: [2026-09-27, 2026-10-10]
)";

absl::Time Cst(int m, int d, int hh = 10, int mm = 0) {
  return absl::FromCivil(absl::CivilSecond(2026, m, d, hh, mm, 0), common::ChinaStandardTime());
}

class AssessmentTest : public ::testing::Test {
 protected:
  AssessmentTest() : policy_(*common::Policy::Parse(kPolicy, "policy.yaml")) {
    history_.nodes = {kX, kY};
  }

  // Publish adds a notice of `origin` to one destination, published (claimed) at `at`.
  PublishedNotice& Publish(const std::string& id, const std::string& origin, const std::string& dest,
                           absl::Time at, const std::string& kind = "check_report",
                           v1::Priority priority = v1::PRIORITY_NORMAL) {
    PublishedNotice& n = history_.notices.emplace_back();
    n.origin = origin;
    n.notice_id = id;
    n.kind = kind;
    n.priority = priority;
    n.occurred_at = at - absl::Hours(1);
    n.published = at;
    n.log_index = history_.notices.size();
    Delivery& d = n.deliveries.emplace_back();
    d.destination = dest;
    d.seq = history_.notices.size();
    return n;
  }
  static void Receipt(PublishedNotice& n, absl::Time at) {
    n.deliveries[0].receipt = TimeBounds{at};
    n.deliveries[0].receipt_log_index = n.log_index + 1000;
  }
  PublishedNotice& Reply(const std::string& id, const PublishedNotice& to, absl::Time at) {
    PublishedNotice& r = Publish(id, to.deliveries[0].destination, to.origin, at, "feedback");
    r.in_reply_to = to.notice_id;
    r.in_reply_to_origin = to.origin;
    return r;
  }

  Assessment Run() {
    return Assess(history_, policy_, *policy_.PeriodNamed("2026-10"), Cst(12, 1));
  }

  static const IndicatorRow* Row(const Assessment& a, const std::string& indicator,
                                 const std::string& origin, const std::string& dest,
                                 v1::Priority p = v1::PRIORITY_UNSPECIFIED) {
    for (const auto& r : a.rows) {
      if (r.indicator == indicator && r.origin == origin && r.destination == dest && r.priority == p) {
        return &r;
      }
    }
    return nullptr;
  }
  static std::vector<std::string> Problems(const Assessment& a, const std::string& indicator) {
    std::vector<std::string> out;
    for (const auto& d : a.details) {
      if (d.indicator == indicator) out.push_back(d.notice_id + ":" + d.problem + (d.clock ? ":clock" : ""));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  common::Policy policy_;
  History history_;
};

TEST_F(AssessmentTest, LateReceiptsCountAsNotReceivedAndOnlyDeadlinesInThePeriodCount) {
  Receipt(Publish("n1", kX, kY, Cst(10, 10)), Cst(10, 10, 10, 1));   // in time
  Receipt(Publish("n2", kX, kY, Cst(10, 10)), Cst(10, 14, 9));       // due Oct 13: late
  Publish("n3", kX, kY, Cst(10, 10));                                // never receipted
  Receipt(Publish("n4", kX, kY, Cst(10, 30)), Cst(10, 30, 11));      // due Nov 2: next period
  Receipt(Publish("n5", kX, kY, Cst(9, 29)), Cst(10, 1));            // due Oct 2: this period
  // A receipt claimed at once, but the origin only sent the batch ten days later.
  PublishedNotice& n6 = Publish("n6", kX, kY, Cst(10, 10));
  Receipt(n6, Cst(10, 10, 10, 5));
  n6.deliveries[0].receipt->lo = Cst(10, 20);
  Assessment a = Run();
  const IndicatorRow* r = Row(a, "receipt_rate", kX, kY);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->numerator, 2u);    // n1, n5
  EXPECT_EQ(r->denominator, 5u);  // not n4
  EXPECT_EQ(r->scored, "destination");
  EXPECT_EQ(r->scope, v1::SCOPE_INTER_PROVINCE);
  EXPECT_EQ(r->target, 80);
  EXPECT_TRUE(r->below());
  EXPECT_EQ(r->clock_marked, 1u);
  EXPECT_EQ(Problems(a, "receipt_rate"),
            (std::vector<std::string>{"n2:LATE_RECEIPT", "n3:NOT_RECEIPTED", "n6:LATE_RECEIPT:clock"}));
}

TEST_F(AssessmentTest, RepliesAfterTheDeadlineVoidsCorrectionsAndBackDatedReplies) {
  auto request = [&](const std::string& id, absl::Time at) -> PublishedNotice& {
    PublishedNotice& n = Publish(id, kX, kY, at, "verification_request", v1::PRIORITY_SUBJECT);
    Receipt(n, at + absl::Minutes(1));
    return n;
  };
  // Received Oct 1: due Oct 16 (15 calendar days).
  Reply("f7", request("n7", Cst(10, 1)), Cst(10, 15));               // timely
  Reply("f8", request("n8", Cst(10, 1)), Cst(10, 20));               // late
  request("n9", Cst(10, 1));                                         // never answered
  request("n10", Cst(10, 1));                                        // voided on Oct 5
  PublishedNotice& v = Publish("v10", kX, kY, Cst(10, 5), "void");
  v.in_reply_to = "n10";
  v.in_reply_to_origin = kX;
  PublishedNotice& n11 = request("n11", Cst(10, 1));                 // corrected on Oct 3
  PublishedNotice& n11b = request("n11b", Cst(10, 3));               // due Oct 18
  n11b.in_reply_to = "n11";
  n11b.in_reply_to_origin = kX;
  n11b.revision = 1;
  Reply("f11", n11, Cst(10, 17));  // answers the correction, in time
  // A reply dated Oct 14 by its author, while X cosigned Y's log without it until Oct 25.
  PublishedNotice& f12 = Reply("f12", request("n12", Cst(10, 1)), Cst(10, 14));
  f12.witnessed.push_back({kX, Cst(10, 25), absl::InfiniteFuture()});
  Assessment a = Run();
  const IndicatorRow* fb = Row(a, "feedback_rate", kX, kY, v1::PRIORITY_SUBJECT);
  const IndicatorRow* timely = Row(a, "timely_feedback_rate", kX, kY, v1::PRIORITY_SUBJECT);
  ASSERT_NE(fb, nullptr);
  ASSERT_NE(timely, nullptr);
  EXPECT_EQ(fb->denominator, 5u);  // n7, n8, n9, n11b, n12
  EXPECT_EQ(fb->numerator, 4u);
  EXPECT_EQ(timely->numerator, 2u);  // n7, n11b
  EXPECT_DOUBLE_EQ(timely->rate(), 40);
  EXPECT_EQ(timely->clock_marked, 1u);
  EXPECT_EQ(Problems(a, "feedback_rate"), (std::vector<std::string>{"n9:NO_REPLY"}));
  EXPECT_EQ(Problems(a, "timely_feedback_rate"),
            (std::vector<std::string>{"n12:LATE_REPLY:clock", "n8:LATE_REPLY"}));
}

TEST_F(AssessmentTest, AReceiverCannotExtendItsDeadlineByPostDatingItsReceipt) {
  // Received (the receiver claims) on Oct 10, but the sender logged the signed receipt on Oct 1:
  // the 15 days count from Oct 1, and the reply on Oct 20 is late.
  PublishedNotice& n = Publish("n", kX, kY, Cst(10, 1), "verification_request", v1::PRIORITY_SUBJECT);
  Receipt(n, Cst(10, 10));
  n.deliveries[0].receipt->hi = Cst(10, 1, 10, 1);
  Reply("f", n, Cst(10, 20));
  Assessment a = Run();
  EXPECT_EQ(Problems(a, "timely_feedback_rate"), std::vector<std::string>{"n:LATE_REPLY:clock"});
  // Its own claim makes the receipt late (due Oct 4): post-dating costs, it never pays.
  EXPECT_EQ(Problems(a, "receipt_rate"),
            (std::vector<std::string>{"f:NOT_RECEIPTED", "n:LATE_RECEIPT:clock"}));
}

TEST_F(AssessmentTest, WorkingDayDeadlinesCountTheCalendar) {
  // Received Wed Sep 30: 15 working days end Tue Oct 27 (holidays Oct 1-7, make-up Sat Oct 10).
  PublishedNotice& n = Publish("bsr", kX, kY, Cst(9, 30), "birth_service_registration");
  Receipt(n, Cst(9, 30, 11));
  Reply("fb", n, Cst(10, 27, 20));  // 15 calendar days would have ended Oct 15
  PublishedNotice& m = Publish("bsr2", kX, kY, Cst(9, 30), "birth_service_registration");
  Receipt(m, Cst(9, 30, 11));
  Reply("fb2", m, Cst(10, 28, 9));  // a day late
  Assessment a = Run();
  const IndicatorRow* timely = Row(a, "timely_feedback_rate", kX, kY, v1::PRIORITY_NORMAL);
  ASSERT_NE(timely, nullptr);
  EXPECT_EQ(timely->denominator, 2u);
  EXPECT_EQ(timely->numerator, 1u);
  EXPECT_EQ(Problems(a, "timely_feedback_rate"), std::vector<std::string>{"bsr2:LATE_REPLY"});
  for (const auto& d : a.details) {
    if (d.notice_id == "bsr2") EXPECT_EQ(d.due, Cst(10, 27, 23, 59) + absl::Seconds(59));
  }
}

TEST_F(AssessmentTest, NotificationTimelinessScoresTheSenderByWitnessedPublication) {
  history_.nodes.insert(kC);
  auto at = [&](const std::string& id, absl::Time occurred, absl::Time published) -> PublishedNotice& {
    PublishedNotice& n = Publish(id, kX, kC, published);
    n.occurred_at = occurred;
    return n;
  };
  at("c1", Cst(10, 1), Cst(10, 2));   // within 30 days
  at("c2", Cst(8, 1), Cst(10, 2));    // two months late
  at("c3", Cst(9, 1), Cst(10, 2));    // limit Oct 1: a day late
  // Claimed Sep 30 (in time, and in September), but C cosigned X's log without it until Oct 5.
  at("c4", Cst(9, 1), Cst(9, 30)).witnessed.push_back({kC, Cst(10, 5), absl::InfiniteFuture()});
  at("c5", Cst(9, 1), Cst(9, 29));    // September: another period
  // Dated after C saw it published (X's clock ahead, or its events dated forward): not on time.
  at("c6", Cst(10, 8, 12), Cst(10, 8, 11)).witnessed.push_back({kC, absl::InfinitePast(), Cst(10, 8, 11)});
  at("c7", Cst(10, 8, 11, 3), Cst(10, 8, 11));  // within the tolerance of a clock
  Assessment a = Run();
  const IndicatorRow* r = Row(a, "notification_timeliness", kX, kC);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->scored, "origin");
  EXPECT_EQ(r->scope, v1::SCOPE_INTRA_PROVINCE);
  EXPECT_EQ(r->target, 85);
  EXPECT_EQ(r->denominator, 6u);
  EXPECT_EQ(r->numerator, 2u);
  EXPECT_EQ(Problems(a, "notification_timeliness"),
            (std::vector<std::string>{"c2:LATE_NOTIFICATION", "c3:LATE_NOTIFICATION",
                                      "c4:LATE_NOTIFICATION:clock",
                                      "c6:OCCURRED_AFTER_PUBLICATION:clock"}));
  // The scope totals add every pair of the scope.
  bool found = false;
  for (const auto& t : a.totals) {
    if (t.indicator == "notification_timeliness" && t.scope == v1::SCOPE_INTRA_PROVINCE) {
      found = true;
      EXPECT_EQ(t.denominator, 6u);
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(AssessmentTest, NoFeedbackIsJudgedWithoutTheRepliersLog) {
  history_.nodes = {kX};  // Y's log is not in the audit: its replies are unknown
  PublishedNotice& n = Publish("n", kX, kY, Cst(10, 1), "verification_request", v1::PRIORITY_SUBJECT);
  Receipt(n, Cst(10, 1, 11));
  Assessment a = Run();
  EXPECT_EQ(Row(a, "feedback_rate", kX, kY), nullptr);
  EXPECT_NE(Row(a, "receipt_rate", kX, kY), nullptr);
}

TEST_F(AssessmentTest, AnOpenPeriodJudgesOnlyPastDeadlines) {
  Publish("late", kX, kY, Cst(10, 1));   // receipt due Oct 4
  Publish("open", kX, kY, Cst(10, 20));  // receipt due Oct 23: after `now`
  Assessment a = Assess(history_, policy_, *policy_.PeriodNamed("2026-10"), Cst(10, 21));
  EXPECT_EQ(Row(a, "receipt_rate", kX, kY)->denominator, 1u);
  ASSERT_FALSE(a.notes.empty());
  EXPECT_NE(a.notes.back().find("the period is not over"), std::string::npos);
}

}  // namespace
}  // namespace caseway::client::audit
