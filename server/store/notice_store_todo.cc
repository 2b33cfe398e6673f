// Replies and the to-do list: the items each notice that owes a reply opens, and the replies,
// voids and corrections that settle them (docs/policy.md, "To-do"); and the policy and clock
// records of the exchange log.
#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/status_macros.h"
#include "common/validation.h"
#include "server/store/notice_store.h"
#include "server/store/statements.h"

namespace caseway::server {

using google::protobuf::util::TimeUtil;

namespace {

constexpr int kOpen = v1::TodoItem::STATE_OPEN;
constexpr int kAnswered = v1::TodoItem::STATE_ANSWERED;
constexpr int kVoided = v1::TodoItem::STATE_VOIDED;
constexpr int kSuperseded = v1::TodoItem::STATE_SUPERSEDED;

// A correction chain longer than this is not followed (revision is at most 1000).
constexpr int kMaxChain = 1001;

google::protobuf::Timestamp Micros(int64_t micros) {
  return TimeUtil::MicrosecondsToTimestamp(micros);
}

}  // namespace

absl::StatusOr<std::vector<TodoKey>> TodoKeysOf(Db* db, const std::string& self,
                                                const std::string& origin,
                                                const std::string& notice_id) {
  std::vector<TodoKey> keys;
  if (origin == self) {
    Stmt& s = db->Prepared("SELECT deliveries FROM notice WHERE notice_id = ?");
    s.Bind(1, notice_id);
    std::string deliveries;
    const bool found = s.Step();
    if (found) deliveries = s.Text(0);
    RETURN_IF_ERROR(s.status("find notice"));
    s.Reset();
    if (!found) return keys;
    ASSIGN_OR_RETURN(auto parsed, ParseDeliveries(deliveries));
    for (auto& [destination, seq] : parsed) {
      keys.push_back({std::move(destination), kOwedToUs, seq});
    }
    return keys;
  }
  // A notice the origin sent twice (on two sequences) has one item, at the first. Found through
  // inbox_by_notice alone: with `origin = ?` and min(channel_seq) in the query, SQLite reads the
  // (origin, channel_seq) key instead, every row the origin sent (measured: the destination's
  // writer at 611 µs per notice instead of 10, over 200,000; bench/results/PROFILE.md). An
  // origin's rows are stored in channel order, so its first row in inbox_seq order (the index's
  // own order on SQLite) is its first copy: the scan stops there, and an origin that sends one id
  // over and over costs each copy one row, not all the copies before it.
  Stmt& s = db->Prepared("SELECT origin, channel_seq FROM inbox WHERE notice_id = ? "
                         "ORDER BY inbox_seq");
  s.Bind(1, notice_id);
  while (s.Step()) {
    if (s.Text(0) != origin) continue;
    keys.push_back({origin, kOwedByUs, s.Int(1)});
    break;
  }
  RETURN_IF_ERROR(s.status("find received notice"));
  s.Reset();
  return keys;
}

absl::StatusOr<std::optional<TodoKey>> NoticeStore::TodoKeyOf(const std::string& origin,
                                                              const std::string& notice_id,
                                                              const std::string& peer) {
  ASSIGN_OR_RETURN(std::vector<TodoKey> keys,
                   TodoKeysOf(todo_stmts_->find_item.db(), options_.self, origin, notice_id));
  for (TodoKey& key : keys) {
    if (key.peer == peer) return std::move(key);
  }
  return std::nullopt;
}

absl::StatusOr<bool> NoticeStore::Settle(const std::string& origin, const std::string& notice_id,
                                         const std::string& peer, int state,
                                         const std::string& by, int64_t at) {
  TodoStatements& t = *todo_stmts_;
  std::string id = notice_id;
  for (int hop = 0; hop < kMaxChain; ++hop) {
    ASSIGN_OR_RETURN(const std::optional<TodoKey> key, TodoKeyOf(origin, id, peer));
    if (!key) return hop > 0;
    t.find_item.Bind(1, key->peer).Bind(2, int64_t{key->side}).Bind(3, key->seq);
    if (!t.find_item.Step()) {
      RETURN_IF_ERROR(t.find_item.status("find to-do item"));
      t.find_item.Reset();
      return hop > 0;
    }
    const int current = static_cast<int>(t.find_item.Int(0));
    const std::string next = t.find_item.IsNull(1) ? "" : t.find_item.Text(1);
    t.find_item.Reset();
    // A reply to a notice that was corrected answers the correction.
    if (current == kSuperseded && !next.empty() && state == kAnswered) {
      id = next;
      continue;
    }
    if (current != kOpen) return true;  // settled before: the first settlement stands
    t.settle_item.Bind(1, int64_t{state}).Bind(2, by).Bind(3, at);
    if (state == kSuperseded) {
      t.settle_item.Bind(4, by);
    } else {
      t.settle_item.BindNull(4);
    }
    t.settle_item.Bind(5, key->peer).Bind(6, int64_t{key->side}).Bind(7, key->seq);
    RETURN_IF_ERROR(Done(t.settle_item, "settle to-do item"));
    return true;
  }
  return true;
}

absl::Status NoticeStore::TrackPublished(const common::NoticeFacts& f,
                                         const v1::PublishResult& result, int64_t now) {
  TodoStatements& t = *todo_stmts_;
  const std::string& self = options_.self;
  // Owed to us: the gateway has set reply_due when the policy owes a reply (or the publisher
  // asked for one by setting it).
  if (f.reply_due) {
    for (const auto& d : result.deliveries()) {
      t.open_item.Bind(1, d.destination()).Bind(2, int64_t{kOwedToUs})
          .Bind(3, static_cast<int64_t>(d.seq())).Bind(4, self).Bind(5, f.notice_id)
          .Bind(6, f.case_id).Bind(7, f.kind).Bind(8, int64_t{f.priority}).Bind(9, now)
          .Bind(10, absl::ToUnixMicros(*f.reply_due)).Bind(11, absl::ToUnixMicros(*f.reply_due));
      RETURN_IF_ERROR(Done(t.open_item, "open to-do item"));
    }
  }
  if (f.in_reply_to.empty()) return absl::OkStatus();
  // The gateway filled in_reply_to_origin and checked that the notice named exists.
  if (f.is_void() || f.is_correction()) {
    ASSIGN_OR_RETURN(const std::vector<TodoKey> keys,
                     TodoKeysOf(t.find_item.db(), self, self, f.in_reply_to));
    for (const TodoKey& key : keys) {
      RETURN_IF_ERROR(Settle(self, f.in_reply_to, key.peer, f.is_void() ? kVoided : kSuperseded,
                             f.notice_id, now).status());
    }
    return absl::OkStatus();
  }
  if (f.in_reply_to_origin != self) {
    RETURN_IF_ERROR(Settle(f.in_reply_to_origin, f.in_reply_to, f.in_reply_to_origin, kAnswered,
                           f.notice_id, now).status());
  }
  return absl::OkStatus();
}

absl::Status NoticeStore::TrackReceived(const std::string& origin, int64_t channel_seq,
                                        const common::NoticeFacts& f, int64_t now) {
  TodoStatements& t = *todo_stmts_;
  const std::string& self = options_.self;
  // Owed by us: the policy's deadline counted from today, or the notice's own reply_due when the
  // policy owes no reply for its kind.
  std::optional<absl::Time> due;
  const auto terms = policy().TermsFor(f.kind, f.priority);
  if (terms.reply) {
    due = common::EndOfDay(policy().DueDay(common::DayOf(absl::FromUnixMicros(now)), *terms.reply));
  } else {
    due = f.reply_due;
  }
  if (due) {
    // At the notice's first inbox row: a second copy of it (the origin sent it again on another
    // sequence) finds the item of the first and opens none.
    ASSIGN_OR_RETURN(const std::optional<TodoKey> first, TodoKeyOf(origin, f.notice_id, origin));
    t.open_item.Bind(1, origin).Bind(2, int64_t{kOwedByUs}).Bind(3, first ? first->seq : channel_seq)
        .Bind(4, origin).Bind(5, f.notice_id).Bind(6, f.case_id).Bind(7, f.kind)
        .Bind(8, int64_t{f.priority}).Bind(9, now).Bind(10, absl::ToUnixMicros(*due));
    if (f.reply_due) {
      t.open_item.Bind(11, absl::ToUnixMicros(*f.reply_due));
    } else {
      t.open_item.BindNull(11);
    }
    RETURN_IF_ERROR(Done(t.open_item, "open to-do item"));
  }
  auto anomaly = [&](const std::string& problem) {
    t.insert_anomaly.Bind(1, origin).Bind(2, f.notice_id).Bind(3, now).Bind(4, problem);
    return Done(t.insert_anomaly, "record anomaly");
  };
  // The origin's gateway checked occurred_at against its own clock; one that runs ahead lets
  // through notices that ours would refuse. They are stored (refusing would block the channel)
  // and flagged, so that neither office takes the time at face value.
  if (f.occurred_at) {
    const absl::Duration ahead = *f.occurred_at - absl::FromUnixMicros(now);
    if (ahead > common::kMaxFutureSkew) {
      RETURN_IF_ERROR(anomaly(absl::StrCat(
          "occurred_at is ", absl::FormatDuration(absl::Trunc(ahead, absl::Seconds(1))),
          " in the future by this node's clock (more than ",
          absl::FormatDuration(common::kMaxFutureSkew), "); the origin's clock may be ahead")));
    }
  }
  if (f.in_reply_to.empty()) return absl::OkStatus();
  // Whether the node holds `owner`'s notice `id` (published here, or received from `owner`).
  auto holds = [&](const std::string& owner, const std::string& id) -> absl::StatusOr<bool> {
    ASSIGN_OR_RETURN(const std::vector<TodoKey> keys,
                     TodoKeysOf(t.find_item.db(), self, owner, id));
    return !keys.empty();
  };
  if (f.is_void() || f.is_correction()) {
    // A void or correction names one of the sender's own notices.
    const std::string target = f.in_reply_to_origin.empty() ? origin : f.in_reply_to_origin;
    const char* what = f.is_void() ? "a void" : "a correction";
    if (target != origin) {
      return anomaly(absl::StrCat(what, " names ", target, "/", f.in_reply_to,
                                  ", a notice of another origin than its sender"));
    }
    ASSIGN_OR_RETURN(bool settled, Settle(origin, f.in_reply_to, origin,
                                          f.is_void() ? kVoided : kSuperseded, f.notice_id, now));
    if (settled) return absl::OkStatus();
    ASSIGN_OR_RETURN(const bool known, holds(origin, f.in_reply_to));
    if (!known) {
      return anomaly(absl::StrCat(what, " names ", origin, "/", f.in_reply_to,
                                  ", which this node never received"));
    }
    return absl::OkStatus();
  }
  // A reply: to one of our notices (settles what the sender owed us), or, copied to us, to
  // another party's notice (nothing of ours to settle).
  const std::string target = f.in_reply_to_origin.empty() ? self : f.in_reply_to_origin;
  if (target != self) return absl::OkStatus();
  ASSIGN_OR_RETURN(bool settled, Settle(self, f.in_reply_to, origin, kAnswered, f.notice_id, now));
  if (settled) return absl::OkStatus();
  ASSIGN_OR_RETURN(const bool known, holds(self, f.in_reply_to));
  if (!known) {
    return anomaly(absl::StrCat("in_reply_to names ", self, "/", f.in_reply_to,
                                ", which this node never published"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> NoticeStore::ReceivedFrom(const std::string& notice_id) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<std::vector<std::string>> {
    std::vector<std::string> origins;
    Stmt s(db, "SELECT DISTINCT origin FROM inbox WHERE notice_id = ? ORDER BY origin");
    s.Bind(1, notice_id);
    while (s.Step()) origins.push_back(s.Text(0));
    RETURN_IF_ERROR(s.status("find received notice"));
    return origins;
  });
}

absl::StatusOr<bool> NoticeStore::Published(const std::string& notice_id) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<bool> {
    Stmt s(db, "SELECT 1 FROM notice WHERE notice_id = ?");
    s.Bind(1, notice_id);
    const bool found = s.Step();
    RETURN_IF_ERROR(s.status("find published notice"));
    return found;
  });
}

absl::StatusOr<std::optional<std::string>> NoticeStore::StoredDigest(const std::string& notice_id) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<std::optional<std::string>> {
    Stmt s(db, "SELECT coalesce(request_digest, digest) FROM notice WHERE notice_id = ?");
    s.Bind(1, notice_id);
    std::optional<std::string> digest;
    if (s.Step()) digest = std::string(s.Blob(0));
    RETURN_IF_ERROR(s.status("find published notice"));
    return digest;
  });
}

void NoticeStore::FillTodoItem(const Stmt& s, absl::Time now, v1::TodoItem* item) const {
  const int64_t now_us = absl::ToUnixMicros(now);
  const absl::CivilDay today = common::DayOf(now);
  v1::TodoItem& i = *item;
  i.set_side(static_cast<v1::TodoRequest::Side>(s.Int(0)));
  i.set_peer(s.Text(1));
  i.set_origin(s.Text(2));
  i.set_notice_id(s.Text(3));
  i.set_case_id(s.Text(4));
  i.set_kind(s.Text(5));
  i.set_priority(static_cast<v1::Priority>(s.Int(6)));
  *i.mutable_opened_at() = Micros(s.Int(7));
  const int64_t due = s.Int(8);
  *i.mutable_due() = Micros(due);
  if (!s.IsNull(9)) {
    *i.mutable_stated_due() = Micros(s.Int(9));
    i.set_due_mismatch(s.Int(9) != due);
  }
  i.set_state(static_cast<v1::TodoItem::State>(s.Int(10)));
  if (!s.IsNull(11)) i.set_cleared_by(s.Text(11));
  if (!s.IsNull(12)) *i.mutable_cleared_at() = Micros(s.Int(12));
  const absl::Time due_time = absl::FromUnixMicros(due);
  i.set_working_days_left(policy().WorkingDaysLeft(today, common::DayOf(due_time)));
  i.set_overdue(i.state() == v1::TodoItem::STATE_OPEN && due < now_us);
}

absl::StatusOr<std::map<std::string, std::pair<uint64_t, uint64_t>>> NoticeStore::Overdue(
    absl::Time now) {
  return ReadOnly([&](Db* db)
                      -> absl::StatusOr<std::map<std::string, std::pair<uint64_t, uint64_t>>> {
    std::map<std::string, std::pair<uint64_t, uint64_t>> overdue;
    // The partial index obligation_open(due) WHERE state = 1 holds exactly the open items.
    Stmt s(db, "SELECT peer, side, count(*) FROM obligation WHERE state = 1 AND due < ? "
               "GROUP BY peer, side");
    s.Bind(1, absl::ToUnixMicros(now));
    while (s.Step()) {
      auto& counts = overdue[s.Text(0)];
      (s.Int(1) == kOwedByUs ? counts.first : counts.second) = static_cast<uint64_t>(s.Int(2));
    }
    RETURN_IF_ERROR(s.status("count overdue to-do items"));
    return overdue;
  });
}

absl::StatusOr<v1::TodoResponse> NoticeStore::Todo(const v1::TodoRequest& req, absl::Time now) {
  const int64_t now_us = absl::ToUnixMicros(now);
  return ReadOnly([&](Db* db) -> absl::StatusOr<v1::TodoResponse> {
    v1::TodoResponse resp;
    {
      Stmt s(db, "SELECT side, count(*), sum(CASE WHEN due < ? THEN 1 ELSE 0 END) FROM obligation "
                 "WHERE state = 1 GROUP BY side");
      s.Bind(1, now_us);
      while (s.Step()) {
        if (s.Int(0) == kOwedByUs) {
          resp.set_owed_by_us(s.Int(1));
          resp.set_overdue_by_us(s.Int(2));
        } else {
          resp.set_owed_to_us(s.Int(1));
        }
      }
      RETURN_IF_ERROR(s.status("count to-do items"));
    }
    {
      const std::string sql = absl::StrCat(
          "SELECT ", kTodoColumns, " FROM obligation "
          "WHERE (state = 1 OR ?1) AND (?2 = 0 OR side = ?2) AND (?3 = '' OR kind = ?3) "
          "AND (?4 = '' OR peer = ?4) AND (?5 = 0 OR priority = ?5) AND (?6 = 0 OR due < ?7) "
          "ORDER BY state <> 1, due, origin, notice_id, peer LIMIT ?8");
      Stmt s(db, sql.c_str());
      s.Bind(1, int64_t{req.include_cleared()})
          .Bind(2, int64_t{req.side()})
          .Bind(3, req.kind())
          .Bind(4, req.peer())
          .Bind(5, int64_t{req.priority()})
          .Bind(6, int64_t{req.overdue_only()})
          .Bind(7, now_us)
          .Bind(8, int64_t{req.limit() == 0 ? 1000 : req.limit()});
      while (s.Step()) {
        FillTodoItem(s, now, resp.add_items());
      }
      RETURN_IF_ERROR(s.status("read to-do items"));
    }
    {
      Stmt s(db, "SELECT peer, notice_id, received_at, problem FROM anomaly ORDER BY id DESC LIMIT 100");
      while (s.Step()) {
        v1::Anomaly& a = *resp.add_anomalies();
        a.set_peer(s.Text(0));
        a.set_notice_id(s.Text(1));
        *a.mutable_received_at() = Micros(s.Int(2));
        a.set_problem(s.Text(3));
      }
      RETURN_IF_ERROR(s.status("read anomalies"));
    }
    return resp;
  });
}

absl::Status NoticeStore::RecordPolicy(const common::Policy& policy) {
  const std::string hex = policy.DigestHex();
  return queue_->Run(
      [&](Db* db) -> absl::Status {
        std::string last;
        {
          Stmt s(db, "SELECT value FROM meta WHERE key = 'policy_digest'");
          if (s.Step()) last = s.Text(0);
          RETURN_IF_ERROR(s.status("read policy digest"));
        }
        if (last == hex) return absl::OkStatus();
        if (options_.log_enabled) {
          v1::LogEntry entry;
          entry.set_kind(v1::LogEntry::KIND_POLICY);
          entry.set_digest(policy.digest());
          entry.set_policy_version(policy.proto().version());
          RETURN_IF_ERROR(AppendEntry(entry).status());
        }
        Stmt s(db, "INSERT INTO meta(key, value) VALUES('policy_digest', ?)"
                   " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
        s.Bind(1, hex);
        while (s.Step()) {
        }
        return s.status("record policy digest");
      },
      [] {});
}

absl::Status NoticeStore::RecordSharingPolicy(const common::SharingPolicy* policy,
                                              const Signer& sign_policy) {
  if (policy != nullptr) RETURN_IF_ERROR(RequireSigner(sign_policy, "the sharing policy"));
  const std::string hex = policy == nullptr ? "" : common::ToHex(policy->digest());
  return queue_->Run(
      [&](Db* db) -> absl::Status {
        std::string last, last_version;
        {
          Stmt s(db, "SELECT key, value FROM meta WHERE key IN ('sharing_policy_digest', "
                     "'sharing_policy_version')");
          while (s.Step()) (s.Text(0) == "sharing_policy_digest" ? last : last_version) = s.Text(1);
          RETURN_IF_ERROR(s.status("read the recorded sharing policy"));
        }
        if (last == hex) return absl::OkStatus();
        if (policy != nullptr && !last.empty() && last_version == policy->version()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "sharing_policy_file: version ", policy->version(),
              " was applied before with other content: a changed policy needs a new version"));
        }
        if (options_.log_enabled) {
          v1::LogEntry entry;
          entry.set_kind(v1::LogEntry::KIND_SHARING_POLICY);
          if (policy != nullptr) {
            entry.set_digest(policy->digest());
            entry.set_policy_version(policy->version());
          }
          ASSIGN_OR_RETURN(uint64_t index, AppendEntry(entry));
          if (policy != nullptr) {
            v1::Signed signed_policy;
            signed_policy.set_message(policy->bytes());
            signed_policy.set_signature(sign_policy(policy->bytes()));
            signed_policy.set_signer(options_.self);
            RETURN_IF_ERROR(InsertEvidence(v1::Evidence::KIND_SHARING_POLICY, "", 0, 0,
                                           policy->digest(), signed_policy, index));
          }
        }
        Stmt s(db, "INSERT INTO meta(key, value) VALUES('sharing_policy_digest', ?), "
                   "('sharing_policy_version', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
        s.Bind(1, hex).Bind(2, policy == nullptr ? "" : policy->version());
        return Done(s, "record the sharing policy");
      },
      [] {});
}

absl::Status NoticeStore::RecordSigningKey(const std::string& public_key) {
  if (!options_.log_enabled) return absl::OkStatus();
  const std::string hex = common::ToHex(public_key);
  return queue_->Run(
      [&](Db* db) -> absl::Status {
        {
          Stmt s(db, "SELECT value FROM meta WHERE key = 'signing_key'");
          if (s.Step() && s.Text(0) == hex) return absl::OkStatus();
          RETURN_IF_ERROR(s.status("read the recorded signing key"));
        }
        v1::LogEntry entry;
        entry.set_kind(v1::LogEntry::KIND_SIGNING_KEY);
        entry.set_signing_key(public_key);
        RETURN_IF_ERROR(AppendEntry(entry).status());
        Stmt s(db, "INSERT INTO meta(key, value) VALUES('signing_key', ?)"
                   " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
        s.Bind(1, hex);
        return Done(s, "record the signing key");
      },
      [] {});
}

absl::Status NoticeStore::RecordClockOffset(const std::string& peer, absl::Duration offset,
                                            bool exceeded) {
  if (!options_.log_enabled) return absl::OkStatus();
  return queue_->Run(
      [&](Db*) -> absl::Status {
        v1::LogEntry entry;
        entry.set_kind(v1::LogEntry::KIND_CLOCK_OFFSET);
        entry.set_peer(peer);
        entry.set_clock_offset_micros(absl::ToInt64Microseconds(offset));
        entry.set_clock_offset_exceeded(exceeded);
        return AppendEntry(entry).status();
      },
      [] {}, CommitQueue::Rerun::kSafe);
}

}  // namespace caseway::server
