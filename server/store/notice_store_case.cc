// NoticeStore: cases and remote queries (case_index, Gateway.Case, PeerExchange.Query).
#include <google/protobuf/util/time_util.h>
#include <openssl/rand.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/proto_bytes.h"
#include "common/signing.h"
#include "common/status_macros.h"
#include "server/store/notice_store.h"
#include "server/store/statements.h"

namespace caseway::server {

using google::protobuf::util::TimeUtil;

namespace {

std::string CaseKey(absl::string_view case_id) { return absl::StrCat("c", case_id); }

std::string SaltedSubjectKey(absl::string_view salt, absl::string_view subject_digest) {
  return absl::StrCat("s", common::Sha256(absl::StrCat(salt, subject_digest)));
}

}  // namespace

absl::StatusOr<std::string> SubjectSalt(Db& db) {
  {
    Stmt s(db.get(), "SELECT value FROM meta WHERE key = 'subject_salt'");
    if (s.Step()) return s.Text(0);
    RETURN_IF_ERROR(s.status("read subject salt"));
  }
  unsigned char salt[32];
  if (RAND_bytes(salt, sizeof salt) != 1) return absl::InternalError("no random bytes for the salt");
  const std::string hex = common::ToHex(absl::string_view(reinterpret_cast<char*>(salt), sizeof salt));
  Stmt s(db.get(), "INSERT INTO meta(key, value) VALUES('subject_salt', ?)");
  s.Bind(1, hex);
  RETURN_IF_ERROR(Done(s, "store subject salt"));
  return hex;
}

absl::Status IndexExistingCases(Db& db, const std::string& self, const std::string& salt) {
  RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE;"));
  auto index = [&]() -> absl::Status {
    Stmt insert(db.get(), "INSERT OR IGNORE INTO case_index(key, origin, notice_id) VALUES(?, ?, ?)");
    auto add = [&](const std::string& origin, absl::string_view bytes) -> absl::Status {
      v1::Notice n;
      if (!n.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
        return absl::DataLossError("index cases: a stored notice does not parse");
      }
      for (const std::string& key : {CaseKey(n.case_id()),
                                     SaltedSubjectKey(salt, common::SubjectDigest(n.subject().id_number()))}) {
        insert.BindBlob(1, key).Bind(2, origin).Bind(3, n.notice_id());
        RETURN_IF_ERROR(Done(insert, "index case"));
      }
      return absl::OkStatus();
    };
    {
      Stmt s(db.get(), "SELECT bytes FROM notice");
      while (s.Step()) RETURN_IF_ERROR(add(self, s.Blob(0)));
      RETURN_IF_ERROR(s.status("read notices"));
    }
    Stmt s(db.get(), "SELECT origin, bytes FROM inbox");
    while (s.Step()) RETURN_IF_ERROR(add(s.Text(0), s.Blob(1)));
    return s.status("read inbox");
  };
  if (absl::Status st = index(); !st.ok()) {
    db.Exec("ROLLBACK;").IgnoreError();
    return st;
  }
  return db.Exec("COMMIT;");
}

std::string NoticeStore::SubjectKey(absl::string_view subject_digest) const {
  return SaltedSubjectKey(subject_salt_, subject_digest);
}

absl::Status NoticeStore::IndexCase(const std::string& origin, const common::NoticeFacts& facts) {
  Stmt& s = stmts_->insert_case;
  for (const std::string& key : {CaseKey(facts.case_id), SubjectKey(facts.subject_digest)}) {
    s.BindBlob(1, key).Bind(2, origin).Bind(3, facts.notice_id);
    RETURN_IF_ERROR(Done(s, "index case"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<NoticeStore::CaseRecord>> NoticeStore::FindCase(absl::string_view key,
                                                                           bool by_subject,
                                                                           size_t limit,
                                                                           bool* truncated) {
  // More index rows than this for one key are not read (a case of 100,000 notices is a bug).
  constexpr int64_t kMaxRows = 100000;
  const std::string index_key =
      by_subject ? SubjectKey(common::SubjectDigest(key)) : CaseKey(key);
  return ReadOnly([&](sqlite3* db) -> absl::StatusOr<std::vector<CaseRecord>> {
    std::vector<CaseRecord> out;
    Stmt keys(db, "SELECT origin, notice_id FROM case_index WHERE key = ? LIMIT ?");
    Stmt published(db, "SELECT bytes, published_at, deliveries FROM notice WHERE notice_id = ?");
    Stmt received(db, "SELECT bytes, received_at, channel_seq, acked_at IS NOT NULL FROM inbox "
                      "WHERE notice_id = ? AND origin = ?");
    keys.BindBlob(1, index_key).Bind(2, kMaxRows);
    while (keys.Step()) {
      CaseRecord r;
      r.origin = keys.Text(0);
      r.notice_id = keys.Text(1);
      if (r.origin == options_.self) {
        r.role = v1::QueryNotice::ROLE_PUBLISHED;
        published.Bind(1, r.notice_id);
        if (published.Step()) {
          r.bytes = std::string(published.Blob(0));
          r.stored_at = absl::FromUnixMicros(published.Int(1));
          for (absl::string_view d : absl::StrSplit(published.Text(2), ',', absl::SkipEmpty())) {
            std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(d, ':');
            uint64_t seq = 0;
            if (!absl::SimpleAtoi(kv.second, &seq)) return absl::DataLossError("notice.deliveries: malformed");
            r.deliveries.emplace_back(std::string(kv.first), seq);
          }
        }
        RETURN_IF_ERROR(published.status("read case notice"));
        published.Reset();
      } else {
        r.role = v1::QueryNotice::ROLE_RECEIVED;
        received.Bind(1, r.notice_id).Bind(2, r.origin);
        if (received.Step()) {
          r.bytes = std::string(received.Blob(0));
          r.stored_at = absl::FromUnixMicros(received.Int(1));
          r.channel_seq = received.Int(2);
          r.consumed = received.Int(3) != 0;
        }
        RETURN_IF_ERROR(received.status("read case notice"));
        received.Reset();
      }
      if (!r.bytes.empty()) out.push_back(std::move(r));
    }
    RETURN_IF_ERROR(keys.status("read case index"));
    std::stable_sort(out.begin(), out.end(), [](const CaseRecord& a, const CaseRecord& b) {
      return a.stored_at < b.stored_at;
    });
    *truncated = out.size() > limit;
    if (out.size() > limit) out.resize(limit);
    return out;
  });
}

absl::StatusOr<std::vector<v1::TodoItem>> NoticeStore::RepliesOf(const std::string& origin,
                                                                 const std::string& notice_id,
                                                                 absl::Time now) {
  return ReadOnly([&](sqlite3* db) -> absl::StatusOr<std::vector<v1::TodoItem>> {
    std::vector<v1::TodoItem> out;
    Stmt s(db, absl::StrCat("SELECT ", kTodoColumns,
                            " FROM obligation WHERE origin = ? AND notice_id = ? ORDER BY peer")
                   .c_str());
    s.Bind(1, origin).Bind(2, notice_id);
    while (s.Step()) FillTodoItem(s, now, &out.emplace_back());
    RETURN_IF_ERROR(s.status("read replies"));
    return out;
  });
}

absl::StatusOr<v1::Signed> NoticeStore::AnswerQuery(v1::QueryAnswer answer) {
  answer.set_answerer(options_.self);
  v1::Signed out;
  out.set_signer(options_.self);
  if (!options_.log_enabled) {
    *answer.mutable_answered_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(common::Now()));
    out.set_message(common::DeterministicBytes(answer));
    return out;
  }
  RETURN_IF_ERROR(queue_->Run(
      [&](sqlite3*) -> absl::Status {
        RETURN_IF_ERROR(Halted());
        answer.set_log_index(log_->NextIndex());
        *answer.mutable_answered_at() =
            TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(common::Now()));
        out.set_message(common::DeterministicBytes(answer));
        out.set_signature(options_.signing_key->Sign(common::kQueryAnswerContext, out.message()));
        v1::LogEntry entry;
        entry.set_kind(v1::LogEntry::KIND_QUERY_ANSWERED);
        entry.set_peer(answer.asker());
        entry.set_request_digest(answer.request_digest());
        entry.set_digest(common::Sha256(out.message()));
        entry.set_first_seq(answer.notices_size());
        ASSIGN_OR_RETURN(uint64_t index, AppendEntry(entry));
        if (index != answer.log_index()) {
          return absl::InternalError("query answer: the log index moved while it was signed");
        }
        return absl::OkStatus();
      },
      [this] { Committed({}); }));
  return out;
}

absl::StatusOr<uint64_t> NoticeStore::RecordQueryAsked(const std::string& peer,
                                                       const v1::QueryAnswer& answer,
                                                       const v1::Signed& signed_answer) {
  if (!options_.log_enabled) return uint64_t{0};
  uint64_t index = 0;
  RETURN_IF_ERROR(queue_->Run(
      [&](sqlite3*) -> absl::Status {
        v1::LogEntry entry;
        entry.set_kind(v1::LogEntry::KIND_QUERY_ASKED);
        entry.set_peer(peer);
        entry.set_request_digest(answer.request_digest());
        entry.set_digest(common::Sha256(signed_answer.message()));
        entry.set_peer_log_index(answer.log_index());
        entry.set_first_seq(answer.notices_size());
        ASSIGN_OR_RETURN(index, AppendEntry(entry));
        return InsertEvidence(v1::Evidence::KIND_QUERY_ANSWER_RECEIVED, peer, 0, 0, entry.digest(),
                              signed_answer, index);
      },
      [this] { Committed({}); }));
  return index;
}

}  // namespace caseway::server
