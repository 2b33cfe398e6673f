#include "client/cli/status_command.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/json.h"

namespace caseway::cli {

namespace {

using google::protobuf::util::TimeUtil;

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(t));
}

// Rounded for people: "20m", "2h5m", "3d4h".
std::string Span(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = -d;
  if (d >= absl::Hours(48)) {
    const int64_t hours = absl::ToInt64Hours(d);
    return absl::StrCat(hours / 24, "d", hours % 24 ? absl::StrCat(hours % 24, "h") : "");
  }
  return absl::FormatDuration(absl::Trunc(d, d >= absl::Minutes(10) ? absl::Minutes(1)
                                                                    : absl::Seconds(1)));
}

std::string LastHeard(const caseway::v1::StatusResponse::Subscription& s, absl::Time now) {
  if (!s.has_last_contact_at()) return "never since the node started";
  return absl::StrCat(Span(now - ToTime(s.last_contact_at())), " ago");
}

}  // namespace

std::vector<std::string> Problems(const caseway::v1::StatusResponse& status,
                                  const CheckThresholds& limits) {
  std::vector<std::string> out;
  const absl::Time now = status.has_now() ? ToTime(status.now()) : absl::Now();
  if (!status.halted().empty()) out.push_back(absl::StrCat("node halted: ", status.halted()));
  for (const auto& s : status.subscriptions()) {
    const bool silent = !s.has_last_contact_at() ||
                        now - ToTime(s.last_contact_at()) > limits.down_for;
    if (s.state() != "connected" && silent) {
      out.push_back(absl::StrCat(s.origin(), ": subscription not connected (", s.state(),
                                 "); last heard ", LastHeard(s, now)));
    }
    if (!s.witness().empty() && s.witness() != "ok" && s.witness().rfind("unreachable", 0) != 0) {
      out.push_back(absl::StrCat(s.origin(), ": witness: ", s.witness()));
    }
    if (s.policy_mismatch()) {
      out.push_back(absl::StrCat(s.origin(), ": runs another federation policy (",
                                 s.peer_policy_digest().substr(0, 16), "…)"));
    }
    if (s.clock_offset_exceeded() && s.has_clock_offset_ms()) {
      out.push_back(absl::StrCat(s.origin(), ": its clock is ",
                                 Span(absl::Milliseconds(s.clock_offset_ms())),
                                 s.clock_offset_ms() > 0 ? " ahead of" : " behind",
                                 " this node's (exchange.max_clock_offset)"));
    }
  }
  for (const auto& c : status.channels()) {
    if (!c.has_oldest_unacked_at()) continue;
    const absl::Duration waited = now - ToTime(c.oldest_unacked_at());
    if (waited > limits.backlog_age) {
      out.push_back(absl::StrCat(c.destination(), ": ", c.head() - std::min(c.head(), c.acked()),
                                 " notice(s) not acknowledged, the oldest for ", Span(waited),
                                 " (--backlog-age ", Span(limits.backlog_age), ")"));
    }
  }
  if (status.has_inbox_oldest_unacked_at()) {
    const absl::Duration waited = now - ToTime(status.inbox_oldest_unacked_at());
    if (waited > limits.inbox_age) {
      out.push_back(absl::StrCat("inbox: ", status.inbox_unacked(),
                                 " notice(s) not taken by the local consumer, the oldest for ",
                                 Span(waited), " (--inbox-age ", Span(limits.inbox_age), ")"));
    }
  }
  if (!status.certificate_problem().empty()) {
    out.push_back(absl::StrCat("certificate: ", status.certificate_problem()));
  }
  if (status.has_signing_key_not_after()) {
    // After a rotation the old key signs only until the grace ends: the new one must be in place.
    const absl::Time end = ToTime(status.signing_key_not_after());
    const std::string day = absl::FormatTime("%Y-%m-%d %H:%M UTC", end, absl::UTCTimeZone());
    if (end <= now) {
      out.push_back(absl::StrCat("signing key: the federation directory stopped accepting it on ",
                                 day, ": install the new key (docs/operator.md)"));
    } else if (end - now < limits.certificate) {
      out.push_back(absl::StrCat("signing key: the federation directory accepts it for ",
                                 Span(end - now), " more, until ", day,
                                 ": install the new key (docs/operator.md, \"Rotating the signing key\")"));
    }
  }
  if (status.has_certificate_not_after()) {
    const absl::Time end = ToTime(status.certificate_not_after());
    const std::string day = absl::FormatTime("%Y-%m-%d", end, absl::UTCTimeZone());
    if (end <= now) {
      out.push_back(absl::StrCat("certificate: expired on ", day));
    } else if (end - now < limits.certificate) {
      out.push_back(absl::StrCat("certificate: expires in ", Span(end - now), ", on ", day,
                                 " (--cert-days ", absl::ToInt64Hours(limits.certificate) / 24,
                                 ")"));
    }
  }
  return out;
}

int RunStatus(caseway::client::Client& client, const StatusFlags& flags) {
  CheckThresholds limits;
  if (!absl::ParseDuration(flags.backlog_age, &limits.backlog_age) ||
      limits.backlog_age <= absl::ZeroDuration()) {
    fprintf(stderr, "caseway status: --backlog-age: a positive duration expected (\"15m\")\n");
    return 2;
  }
  if (!absl::ParseDuration(flags.inbox_age, &limits.inbox_age) ||
      limits.inbox_age <= absl::ZeroDuration()) {
    fprintf(stderr, "caseway status: --inbox-age: a positive duration expected (\"1h\")\n");
    return 2;
  }
  if (flags.cert_days < 0 || flags.cert_days > 3650) {
    fprintf(stderr, "caseway status: --cert-days: 0..3650 expected\n");
    return 2;
  }
  limits.certificate = absl::Hours(24) * flags.cert_days;
  if (!absl::ParseDuration(flags.down_for, &limits.down_for) ||
      limits.down_for < absl::ZeroDuration()) {
    fprintf(stderr, "caseway status: --down-for: a duration expected (\"1m\", \"0s\")\n");
    return 2;
  }

  auto status = client.Status();
  if (!status.ok()) {
    fprintf(stderr, "caseway status: %s: %s\n",
            absl::StatusCodeToString(status.status().code()).c_str(),
            std::string(status.status().message()).c_str());
    // Not reached is not a refusal: a monitoring script tells "node down" from "problem found".
    const absl::StatusCode code = status.status().code();
    return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded
               ? 2
               : 1;
  }
  const absl::Time now = status->has_now() ? ToTime(status->now()) : absl::Now();
  if (flags.json) {
    printf("%s\n", common::ProtoJson(*status, /*with_zeros=*/true).c_str());
  } else {
    printf("node %s   inbox: %llu received, %llu unacknowledged\n\n",
           status->jurisdiction().c_str(), static_cast<unsigned long long>(status->inbox_total()),
           static_cast<unsigned long long>(status->inbox_unacked()));
    if (!status->halted().empty()) printf("HALTED: %s\n\n", status->halted().c_str());
    printf("policy %s (%.16s…)\n", status->policy_version().c_str(),
           status->policy_digest().c_str());
    if (!status->certificate_problem().empty()) {
      printf("CERTIFICATE: %s\n", status->certificate_problem().c_str());
    }
    if (status->has_signing_key_not_after()) {
      printf("signing key accepted until %s\n",
             absl::FormatTime("%Y-%m-%d %H:%M UTC", ToTime(status->signing_key_not_after()),
                              absl::UTCTimeZone())
                 .c_str());
    }
    if (status->has_certificate_not_after()) {
      printf("certificate valid until %s\n",
             absl::FormatTime("%Y-%m-%d %H:%M UTC", ToTime(status->certificate_not_after()),
                              absl::UTCTimeZone())
                 .c_str());
    }
    printf("\n%-14s %10s %10s %10s %8s  %s\n", "CHANNEL TO", "HEAD", "ACKED", "BEHIND", "STREAMS",
           "OLDEST UNACKED");
    for (const auto& c : status->channels()) {
      printf("%-14s %10llu %10llu %10llu %8u  %s\n", c.destination().c_str(),
             static_cast<unsigned long long>(c.head()), static_cast<unsigned long long>(c.acked()),
             static_cast<unsigned long long>(c.head() - std::min(c.head(), c.acked())),
             c.open_streams(),
             c.has_oldest_unacked_at()
                 ? absl::StrCat(Span(now - ToTime(c.oldest_unacked_at())), " ago").c_str()
                 : "-");
    }
    printf("\n%-14s %-22s %10s %10s %8s  %-12s %s\n", "SUBSCRIBED TO", "ADDRESS", "CURSOR",
           "PEER HEAD", "LAG", "LAST HEARD", "STATE");
    for (const auto& s : status->subscriptions()) {
      printf("%-14s %-22s %10llu %10llu %8llu  %-12s %s\n", s.origin().c_str(),
             s.address().c_str(), static_cast<unsigned long long>(s.cursor()),
             static_cast<unsigned long long>(s.peer_head()),
             static_cast<unsigned long long>(s.lag()),
             s.has_last_contact_at()
                 ? absl::StrCat(Span(now - ToTime(s.last_contact_at())), " ago").c_str()
                 : "never",
             s.state().c_str());
      if (!s.witness().empty() && s.witness() != "ok") {
        printf("%-14s witness: %s\n", "", s.witness().c_str());
      }
      if (s.has_clock_offset_ms() && s.clock_offset_exceeded()) {
        const int64_t ms = s.clock_offset_ms();
        printf("%-14s clock: the peer's clock is %s %s ours (exchange.max_clock_offset)\n", "",
               Span(absl::Milliseconds(std::llabs(ms))).c_str(), ms > 0 ? "ahead of" : "behind");
      }
      if (s.policy_mismatch()) {
        printf("%-14s policy: the peer runs another federation policy (%.16s…)\n", "",
               s.peer_policy_digest().c_str());
      }
      for (const auto& [reason, count] : s.refused_batches()) {
        printf("%-14s refused %llu batch(es): %s\n", "", static_cast<unsigned long long>(count),
               reason.c_str());
      }
    }
  }
  if (!flags.check) return status->halted().empty() ? 0 : 1;
  const std::vector<std::string> problems = Problems(*status, limits);
  for (const std::string& p : problems) fprintf(stderr, "problem: %s\n", p.c_str());
  if (problems.empty()) fprintf(stderr, "caseway status: no problem found\n");
  return problems.empty() ? 0 : 1;
}

}  // namespace caseway::cli
