// NoticeStore: cases and remote queries (case_index, Gateway.Case, PeerExchange.Query).
#include <google/protobuf/util/time_util.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/refusal.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/log_entry.h"
#include "common/proto_bytes.h"
#include "common/signing.h"
#include "common/status_macros.h"
#include "server/store/notice_store.h"
#include "server/store/statements.h"

namespace caseway::server {

using google::protobuf::util::TimeUtil;

namespace {

// IndexKey is the case_index key of a case id ('c') or a subject digest ('s'): the first 8 bytes
// of SHA-256(salt || kind || value) as a signed integer. Short keys keep the index small (it
// grows by two random B-tree inserts per notice); a key shared by chance is told apart when the
// notice is read (FindCase compares the case id or the subject's digest).
int64_t IndexKey(absl::string_view salt, char kind, absl::string_view value) {
  const std::string d = common::Sha256(absl::StrCat(salt, absl::string_view(&kind, 1), value));
  uint64_t k = 0;
  for (int i = 0; i < 8; ++i) k = (k << 8) | static_cast<unsigned char>(d[i]);
  return static_cast<int64_t>(k);
}

// A case-index ref is a notice id (text) or an inbox_seq. SQLite keeps the inbox_seq as an
// integer in the same column; a PostgreSQL column has one type, so there it is "#" and the number
// (notice ids never hold '#': common/validation.cc). ReadRef reads either form.
void BindRef(Stmt& s, int i, const std::string& notice_id) { s.Bind(i, notice_id); }
void BindRef(Stmt& s, int i, int64_t inbox_seq) {
  if (s.db()->backend() == Db::Backend::kSqlite) {
    s.Bind(i, inbox_seq);
  } else {
    s.Bind(i, absl::StrCat("#", inbox_seq));
  }
}
std::variant<int64_t, std::string> ReadRef(const Stmt& s, int col) {
  if (s.IsInteger(col)) return s.Int(col);
  std::string text = s.Text(col);
  int64_t inbox_seq = 0;
  if (absl::StartsWith(text, "#") && absl::SimpleAtoi(absl::string_view(text).substr(1), &inbox_seq)) {
    return inbox_seq;
  }
  return text;
}

// InsertKeys adds the two index rows of a notice with the statement `insert`; `ref` is its
// notice_id (published here) or its inbox_seq (received). With `keys`, each row's id is kept.
template <typename Ref>
absl::Status InsertKeys(Stmt& insert, absl::string_view salt, const std::string& case_id,
                        const std::string& subject_digest, const Ref& ref,
                        std::vector<NoticeStore::PendingKey>* keys) {
  for (int64_t key : {IndexKey(salt, 'c', case_id), IndexKey(salt, 's', subject_digest)}) {
    insert.Bind(1, key);
    BindRef(insert, 2, ref);
    if (keys == nullptr) {
      RETURN_IF_ERROR(Done(insert, "index case"));
      continue;
    }
    ASSIGN_OR_RETURN(int64_t id, Returned(insert, "index case"));  // insert_case: RETURNING id
    keys->push_back({id, key, ref});
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> SubjectSalt(Db& db) {
  {
    Stmt s(&db, "SELECT value FROM meta WHERE key = 'subject_salt'");
    if (s.Step()) return s.Text(0);
    RETURN_IF_ERROR(s.status("read subject salt"));
  }
  unsigned char salt[32];
  if (RAND_bytes(salt, sizeof salt) != 1) return absl::InternalError("no random bytes for the salt");
  const std::string hex = common::ToHex(absl::string_view(reinterpret_cast<char*>(salt), sizeof salt));
  Stmt s(&db, "INSERT INTO meta(key, value) VALUES('subject_salt', ?)");
  s.Bind(1, hex);
  RETURN_IF_ERROR(Done(s, "store subject salt"));
  return hex;
}

absl::Status IndexExistingCases(Db& db, const std::string& salt) {
  RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE;"));
  auto index = [&]() -> absl::Status {
    Stmt insert(&db, "INSERT INTO case_index(key, ref) VALUES(?, ?) ON CONFLICT DO NOTHING");
    auto parse = [](absl::string_view bytes, v1::Notice* n) -> absl::Status {
      if (!n->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
        return absl::DataLossError("index cases: a stored notice does not parse");
      }
      return absl::OkStatus();
    };
    {
      Stmt s(&db, "SELECT notice_id, bytes FROM notice");
      while (s.Step()) {
        if (s.Blob(1).empty()) continue;  // purged under retention
        v1::Notice n;
        RETURN_IF_ERROR(parse(s.Blob(1), &n));
        RETURN_IF_ERROR(InsertKeys(insert, salt, n.case_id(),
                                   common::SubjectDigest(n.subject().id_number()), s.Text(0),
                                   nullptr));
      }
      RETURN_IF_ERROR(s.status("read notices"));
    }
    Stmt s(&db, "SELECT inbox_seq, bytes FROM inbox");
    while (s.Step()) {
      if (s.Blob(1).empty()) continue;  // purged under retention
      v1::Notice n;
      RETURN_IF_ERROR(parse(s.Blob(1), &n));
      RETURN_IF_ERROR(InsertKeys(insert, salt, n.case_id(),
                                 common::SubjectDigest(n.subject().id_number()), s.Int(0),
                                 nullptr));
    }
    return s.status("read inbox");
  };
  if (absl::Status st = index(); !st.ok()) {
    db.Exec("ROLLBACK;").IgnoreError();
    return st;
  }
  return db.Exec("COMMIT;");
}

absl::Status NoticeStore::IndexPublished(const common::NoticeFacts& facts,
                                         std::vector<PendingKey>* keys) {
  return InsertKeys(stmts_->insert_case, subject_salt_, facts.case_id, facts.subject_digest,
                    facts.notice_id, keys);
}

absl::Status NoticeStore::IndexReceived(int64_t inbox_seq, const common::NoticeFacts& facts,
                                        std::vector<PendingKey>* keys) {
  return InsertKeys(stmts_->insert_case, subject_salt_, facts.case_id, facts.subject_digest,
                    inbox_seq, keys);
}

void NoticeStore::AddPendingKeys(std::vector<PendingKey> keys) {
  if (keys.empty()) return;
  absl::MutexLock lock(&index_mu_);
  for (auto& k : keys) pending_keys_.push_back(std::move(k));
}

absl::Status NoticeStore::LoadPendingKeys(Db& db) {
  Stmt s(&db, "SELECT id, key, ref FROM case_index_new ORDER BY id");
  absl::MutexLock lock(&index_mu_);
  while (s.Step()) {
    pending_keys_.push_back(PendingKey{s.Int(0), s.Int(1), ReadRef(s, 2)});
  }
  return s.status("read unmerged case index rows");
}

bool NoticeStore::CaseMergeDue(std::chrono::steady_clock::time_point last_merge) {
  absl::MutexLock lock(&index_mu_);
  if (pending_keys_.empty()) return false;
  return static_cast<int64_t>(pending_keys_.size()) >= options_.case_merge_rows ||
         std::chrono::steady_clock::now() - last_merge >=
             absl::ToChronoNanoseconds(options_.case_merge_interval);
}

absl::Status NoticeStore::MergeCaseIndex() {
  int64_t through = 0;
  {
    absl::MutexLock lock(&index_mu_);
    if (pending_keys_.empty()) return absl::OkStatus();
    through = pending_keys_.back().id;
  }
  // Sorted by key, the inserts touch each page of case_index once; committed rows only (what
  // pending_keys_ holds), so a notice being stored now keeps its rows for the next merge.
  // SQLite's OR IGNORE, not ON CONFLICT DO NOTHING (PostgreSQL's only form): for an upsert of
  // many rows SQLite 3.40 opens a statement journal and first copies into it every page the
  // statement changes (3,000 rows merged wrote 1,027 pages there beside 1,053 to the WAL).
  return queue_->Run(
      [&](Db* db) -> absl::Status {
        const bool sqlite = db->backend() == Db::Backend::kSqlite;
        const std::string sql = absl::StrCat(
            sqlite ? "INSERT OR IGNORE" : "INSERT", " INTO case_index(key, ref) SELECT key, ref ",
            "FROM case_index_new WHERE id <= ", through, " ORDER BY key, ref",
            sqlite ? "" : " ON CONFLICT DO NOTHING", "; DELETE FROM case_index_new WHERE id <= ",
            through, ";");
        absl::Status merged = db->Exec(sql.c_str());
        if (!merged.ok()) {
          return absl::InternalError(absl::StrCat("merge the case index: ", merged.message()));
        }
        return absl::OkStatus();
      },
      [&] {
        absl::MutexLock lock(&index_mu_);
        while (!pending_keys_.empty() && pending_keys_.front().id <= through) {
          pending_keys_.pop_front();
        }
      },
      CommitQueue::Rerun::kSafe);
}

absl::StatusOr<std::vector<NoticeStore::CaseRecord>> NoticeStore::FindCase(
    absl::string_view key, bool by_subject, size_t limit, bool* truncated,
    const std::string& party, const std::set<std::string>* kinds) {
  // More index rows than this for one key are not read (a case of 100,000 notices is a bug);
  // `truncated` then says so too.
  constexpr int64_t kMaxRows = 100000;
  const std::string subject_digest = by_subject ? common::SubjectDigest(key) : "";
  const int64_t index_key = by_subject ? IndexKey(subject_salt_, 's', subject_digest)
                                       : IndexKey(subject_salt_, 'c', key);
  // The rows not merged yet first: a merge that commits meanwhile removes them from memory only
  // after its commit, so the index read below (a later snapshot) then holds them.
  std::vector<std::variant<int64_t, std::string>> found;
  {
    absl::MutexLock lock(&index_mu_);
    for (const PendingKey& k : pending_keys_) {
      if (k.key == index_key) found.push_back(k.ref);
    }
  }
  return ReadOnly([&](Db* db) -> absl::StatusOr<std::vector<CaseRecord>> {
    std::vector<CaseRecord> out;
    Stmt refs(db, "SELECT ref FROM case_index WHERE key = ? LIMIT ?");
    Stmt published(db, "SELECT bytes, published_at, deliveries FROM notice WHERE notice_id = ?");
    Stmt received(db, "SELECT origin, notice_id, bytes, received_at, channel_seq, "
                      "acked_at IS NOT NULL FROM inbox WHERE inbox_seq = ?");
    refs.Bind(1, index_key).Bind(2, kMaxRows);
    int64_t rows = 0;
    while (refs.Step()) {
      ++rows;
      found.push_back(ReadRef(refs, 0));
    }
    RETURN_IF_ERROR(refs.status("read case index"));
    std::sort(found.begin(), found.end());
    found.erase(std::unique(found.begin(), found.end()), found.end());
    // Oldest first, reading only the times; then the notices themselves up to `limit`, so a
    // subject with very many notices costs memory for `limit` of them only.
    Stmt published_at(db, "SELECT published_at FROM notice WHERE notice_id = ?");
    Stmt received_at(db, "SELECT received_at FROM inbox WHERE inbox_seq = ?");
    std::vector<std::pair<int64_t, const std::variant<int64_t, std::string>*>> by_time;
    for (const auto& ref : found) {
      Stmt& t = std::holds_alternative<int64_t>(ref) ? received_at : published_at;
      if (std::holds_alternative<int64_t>(ref)) {
        t.Bind(1, std::get<int64_t>(ref));
      } else {
        t.Bind(1, std::get<std::string>(ref));
      }
      if (t.Step()) by_time.emplace_back(t.Int(0), &ref);
      RETURN_IF_ERROR(t.status("read case notice time"));
      t.Reset();
    }
    std::stable_sort(by_time.begin(), by_time.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    *truncated = party.empty() && kinds == nullptr && rows == kMaxRows;
    for (const auto& [time, ref_ptr] : by_time) {
      const auto& ref = *ref_ptr;
      CaseRecord r;
      if (std::holds_alternative<int64_t>(ref)) {
        r.role = v1::QueryNotice::ROLE_RECEIVED;
        received.Bind(1, std::get<int64_t>(ref));
        if (received.Step()) {
          r.origin = received.Text(0);
          r.notice_id = received.Text(1);
          r.stored_at = absl::FromUnixMicros(received.Int(3));
          r.channel_seq = received.Int(4);
          ASSIGN_OR_RETURN(r.bytes, OpenBody(options_.sealer.get(), received.Blob(2),
                                             InboxContext(r.origin, r.channel_seq)));
          r.consumed = received.Int(5) != 0;
        }
        RETURN_IF_ERROR(received.status("read case notice"));
        received.Reset();
      } else {
        r.role = v1::QueryNotice::ROLE_PUBLISHED;
        r.origin = options_.self;
        r.notice_id = std::get<std::string>(ref);
        published.Bind(1, r.notice_id);
        if (published.Step()) {
          ASSIGN_OR_RETURN(r.bytes, OpenBody(options_.sealer.get(), published.Blob(0),
                                             NoticeContext(r.notice_id)));
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
      }
      if (r.bytes.empty()) continue;
      if (!party.empty() && r.role == v1::QueryNotice::ROLE_PUBLISHED &&
          std::none_of(r.deliveries.begin(), r.deliveries.end(),
                       [&](const auto& d) { return d.first == party; })) {
        continue;
      }
      // Keys are short: a notice of another case or subject may share one. Keep only matches.
      v1::Notice n;
      if (!n.ParseFromString(r.bytes)) return absl::DataLossError("a stored notice does not parse");
      const bool match = by_subject ? common::SubjectDigest(n.subject().id_number()) == subject_digest
                                    : n.case_id() == key;
      if (!match) continue;
      if (kinds != nullptr && kinds->count(common::NoticeKind(n)) == 0) continue;
      if (!party.empty() && r.role == v1::QueryNotice::ROLE_RECEIVED && r.origin != party &&
          std::find(n.destinations().begin(), n.destinations().end(), party) ==
              n.destinations().end()) {
        continue;
      }
      if (out.size() == limit) {  // one more that counts: there are more than `limit`
        *truncated = true;
        break;
      }
      out.push_back(std::move(r));
    }
    return out;
  });
}

absl::StatusOr<std::vector<NoticeStore::CaseRecord>> NoticeStore::ReadFeed(
    const v1::FeedPosition& after, const std::set<std::string>& kinds, size_t limit,
    v1::FeedPosition* next, bool* more) {
  constexpr int64_t kMaxRows = 10000;
  const bool started = after.published() != 0 || after.received() != 0;
  if ((started || !after.epoch().empty()) && after.epoch() != feed_epoch_) {
    return common::Refusal(
        absl::StatusCode::kFailedPrecondition, "FEED_RESTARTED",
        "after.epoch: the position counts in another copy of this node's store (it was restored "
        "from a backup or rebuilt since): start again from the empty position");
  }
  *next = after;
  next->set_epoch(feed_epoch_);
  *more = false;
  return ReadOnly([&](Db* db) -> absl::StatusOr<std::vector<CaseRecord>> {
    std::vector<CaseRecord> out;
    // Scan one table from `*at` on: rows of other kinds (and purged ones) are passed over, and
    // `*at` advances past every row looked at and kept, never past one that did not fit.
    auto scan = [&](Stmt& rows, uint64_t* at, auto&& fill) -> absl::Status {
      rows.Bind(1, static_cast<int64_t>(*at)).Bind(2, kMaxRows);
      int64_t seen = 0;
      while (rows.Step()) {
        ++seen;
        CaseRecord r;
        r.position = static_cast<uint64_t>(rows.Int(0));
        RETURN_IF_ERROR(fill(rows, &r));
        if (!r.bytes.empty()) {
          v1::Notice n;
          if (!n.ParseFromString(r.bytes)) return absl::DataLossError("a stored notice does not parse");
          if (kinds.count(common::NoticeKind(n)) != 0) {
            if (out.size() == limit) {
              *more = true;
              return absl::OkStatus();
            }
            out.push_back(std::move(r));
          }
        }
        *at = static_cast<uint64_t>(rows.Int(0));
      }
      RETURN_IF_ERROR(rows.status("read the feed"));
      if (seen == kMaxRows) *more = true;
      return absl::OkStatus();
    };
    Stmt published(db, "SELECT rowid, notice_id, bytes, published_at FROM notice "
                       "WHERE rowid > ? ORDER BY rowid LIMIT ?");
    uint64_t at = next->published();
    RETURN_IF_ERROR(scan(published, &at, [&](Stmt& s, CaseRecord* r) -> absl::Status {
      r->role = v1::QueryNotice::ROLE_PUBLISHED;
      r->origin = options_.self;
      r->notice_id = s.Text(1);
      r->stored_at = absl::FromUnixMicros(s.Int(3));
      ASSIGN_OR_RETURN(r->bytes, OpenBody(options_.sealer.get(), s.Blob(2),
                                          NoticeContext(r->notice_id)));
      return absl::OkStatus();
    }));
    next->set_published(at);
    if (*more) return out;  // the received ones after the published ones that did not fit
    Stmt received(db, "SELECT inbox_seq, origin, notice_id, bytes, received_at, channel_seq "
                      "FROM inbox WHERE inbox_seq > ? ORDER BY inbox_seq LIMIT ?");
    at = next->received();
    RETURN_IF_ERROR(scan(received, &at, [&](Stmt& s, CaseRecord* r) -> absl::Status {
      r->role = v1::QueryNotice::ROLE_RECEIVED;
      r->origin = s.Text(1);
      r->notice_id = s.Text(2);
      r->stored_at = absl::FromUnixMicros(s.Int(4));
      r->channel_seq = static_cast<uint64_t>(s.Int(5));
      ASSIGN_OR_RETURN(r->bytes, OpenBody(options_.sealer.get(), s.Blob(3),
                                          InboxContext(r->origin, r->channel_seq)));
      return absl::OkStatus();
    }));
    next->set_received(at);
    return out;
  });
}

absl::StatusOr<std::vector<v1::TodoItem>> NoticeStore::RepliesOf(const std::string& origin,
                                                                 const std::string& notice_id,
                                                                 absl::Time now) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<std::vector<v1::TodoItem>> {
    std::vector<v1::TodoItem> out;
    ASSIGN_OR_RETURN(std::vector<TodoKey> keys, TodoKeysOf(db, options_.self, origin, notice_id));
    std::sort(keys.begin(), keys.end(),
              [](const TodoKey& a, const TodoKey& b) { return a.peer < b.peer; });
    Stmt s(db, absl::StrCat("SELECT ", kTodoColumns,
                            " FROM obligation WHERE peer = ? AND side = ? AND seq = ?")
                   .c_str());
    for (const TodoKey& key : keys) {
      s.Bind(1, key.peer).Bind(2, int64_t{key.side}).Bind(3, key.seq);
      if (s.Step()) FillTodoItem(s, now, &out.emplace_back());
      RETURN_IF_ERROR(s.status("read replies"));
      s.Reset();
    }
    return out;
  });
}

absl::StatusOr<v1::Signed> NoticeStore::AnswerQuery(v1::QueryAnswer answer,
                                                    const AccessEntry& access,
                                                    const Signer& sign_answer) {
  RETURN_IF_ERROR(RequireSigner(sign_answer, "the answer"));
  answer.set_answerer(options_.self);
  v1::Signed out;
  out.set_signer(options_.self);
  if (!options_.log_enabled) {
    *answer.mutable_answered_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(common::Now()));
    out.set_message(common::DeterministicBytes(answer));
    RETURN_IF_ERROR(RecordAccess(access));
    return out;
  }
  RETURN_IF_ERROR(queue_->Run(
      [&](Db* db) -> absl::Status {
        RETURN_IF_ERROR(Halted());
        RETURN_IF_ERROR(InsertAccess(db, access));
        answer.set_log_index(log_->NextIndex());
        *answer.mutable_answered_at() =
            TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(common::Now()));
        out.set_message(common::DeterministicBytes(answer));
        out.set_signature(sign_answer(out.message()));
#ifdef CASEWAY_TEST_FAULTS
        // Test fault: the n-th answer's signature does not verify (the asker must refuse it).
        static std::atomic<uint64_t> answers{0};
        const uint64_t nth = ++answers;
        if (common::FaultHits("bad_query_answer_signature", nth, nth)) {
          (*out.mutable_signature())[0] ^= 1;
        }
#endif
        v1::LogEntry entry;
        entry.set_kind(v1::LogEntry::KIND_QUERY_ANSWERED);
        entry.set_peer(answer.asker());
        entry.set_request_digest(answer.request_digest());
        entry.set_digest(common::Sha256(out.message()));
        // Test fault: an answerer whose log contradicts the answer it signed.
        if (common::FaultHits("forge_query_answered", 1, 1)) {
          entry.set_digest(common::Sha256("not the answer that was signed"));
        }
        entry.set_first_seq(answer.notices_size());
        entry.set_sharing_policy_digest(answer.sharing_policy_digest());
        // Test fault: a node that answers a department but logs no policy and keeps no copy.
        if (common::FaultHits("answer_unrecorded", 1, 1)) {
          entry.clear_sharing_policy_digest();
          answer.clear_sharing_policy_digest();
        }
        ASSIGN_OR_RETURN(uint64_t index, AppendEntry(entry));
        if (index != answer.log_index()) {
          return absl::InternalError("query answer: the log index moved while it was signed");
        }
        // An answer without notices shows nothing to check (a feed's empty poll): not kept.
        if (answer.sharing_policy_digest().empty() || answer.notices_size() == 0) {
          return absl::OkStatus();
        }
        // Given under the sharing policy: kept, sealed, for a coordinator to check against it.
        v1::Signed stored = out;
        if (options_.sealer) {
          stored.set_message(
              options_.sealer->Seal(out.message(), AnswerContext(answer.asker(), entry.digest())));
        }
        return InsertEvidence(v1::Evidence::KIND_QUERY_ANSWER_SENT, answer.asker(), 0, 0,
                              entry.digest(), stored, index);
      },
      [this] { Committed({}); }));
  return out;
}

absl::StatusOr<uint64_t> NoticeStore::RecordQueryAsked(const std::string& peer,
                                                       const v1::QueryAnswer& answer,
                                                       const v1::Signed& signed_answer,
                                                       const AccessEntry& access) {
  if (!options_.log_enabled) {
    RETURN_IF_ERROR(RecordAccess(access));
    return uint64_t{0};
  }
  const std::string digest = common::Sha256(signed_answer.message());
  v1::Signed stored = signed_answer;  // the answer holds notices: sealed at rest
  if (options_.sealer) {
    stored.set_message(options_.sealer->Seal(signed_answer.message(), AnswerContext(peer, digest)));
  }
  uint64_t index = 0;
  RETURN_IF_ERROR(queue_->Run(
      [&](Db* db) -> absl::Status {
        RETURN_IF_ERROR(InsertAccess(db, access));
        v1::LogEntry entry;
        entry.set_kind(v1::LogEntry::KIND_QUERY_ASKED);
        entry.set_peer(peer);
        entry.set_request_digest(answer.request_digest());
        entry.set_digest(digest);
        entry.set_peer_log_index(answer.log_index());
        entry.set_first_seq(answer.notices_size());
        ASSIGN_OR_RETURN(index, AppendEntry(entry));
        return InsertEvidence(v1::Evidence::KIND_QUERY_ANSWER_RECEIVED, peer, 0, 0, digest, stored,
                              index);
      },
      [this] { Committed({}); }));
  return index;
}

absl::StatusOr<NoticeStore::PurgeCounts> NoticeStore::Purge(absl::Time before, int limit,
                                                            std::array<bool, 3> tables) {
  PurgeCounts counts;
  const int64_t cutoff = absl::ToUnixMicros(before);
  PurgeScan scans[3] = {purge_[0], purge_[1], purge_[2]};
  RETURN_IF_ERROR(queue_->Run(
      [&](Db* db) -> absl::Status {
        // What the purge deletes or shrinks is overwritten with zeros, not left in free space
        // (only here: the writer's other deletes, e.g. the case-index merge, hold no personal
        // data and need not pay for it).
        // (SQLite's pragma; PostgreSQL has no free-list pages to scrub.)
        const bool sqlite = db->backend() == Db::Backend::kSqlite;
        if (sqlite) {
          absl::Status secure = db->Exec("PRAGMA secure_delete=ON;");
          if (!secure.ok()) {
            return absl::InternalError(absl::StrCat("purge: secure_delete: ", secure.message()));
          }
        }
        absl::Cleanup insecure = [db, sqlite] {
          if (sqlite) db->Exec("PRAGMA secure_delete=OFF;").IgnoreError();
        };
        // Each table is scanned in rowid order (which is time order) from where the last call
        // stopped; a pass ends at the first row younger than `before` or at the end, and the
        // next pass starts at the first row it had to leave (unsettled), so those are looked at
        // again and purged ones are not.
        int table = -1;
        auto scan = [&](PurgeScan& at, Stmt& rows, auto&& time_of,
                        auto&& settle) -> absl::Status {
          ++table;
          if (!tables[table]) return absl::OkStatus();
          int seen = 0;
          bool young = false;
          int64_t last = at.from;
          rows.Bind(1, at.from).Bind(2, limit);
          while (rows.Step()) {
            ++seen;
            last = rows.Int(0);
            ASSIGN_OR_RETURN(int64_t time, time_of(rows));
            if (time >= cutoff) {
              young = true;
              break;
            }
            ASSIGN_OR_RETURN(bool purged, settle(rows));
            if (!purged && at.next < 0) at.next = last - 1;
          }
          RETURN_IF_ERROR(rows.status("purge scan"));
          if (!young && seen == limit) {
            counts.more = true;
            counts.more_in[table] = true;
            at.from = last;
            return absl::OkStatus();
          }
          // The pass is over.
          at.from = at.next >= 0 ? at.next : (young ? last - 1 : last);
          at.next = -1;
          return absl::OkStatus();
        };
        Stmt unindex(db, "DELETE FROM case_index WHERE key = ? AND ref = ?");
        auto forget = [&](absl::string_view stored, const std::string& context,
                          const auto& ref) -> absl::Status {
          ASSIGN_OR_RETURN(const std::string bytes, OpenBody(options_.sealer.get(), stored, context));
          v1::Notice n;
          if (!n.ParseFromString(bytes)) {
            return absl::DataLossError("purge: a stored notice does not parse");
          }
          const common::NoticeFacts f = common::FactsOf(n);
          for (int64_t key : {IndexKey(subject_salt_, 'c', f.case_id),
                              IndexKey(subject_salt_, 's', f.subject_digest)}) {
            unindex.Bind(1, key);
            BindRef(unindex, 2, ref);
            RETURN_IF_ERROR(Done(unindex, "purge case index"));
          }
          return absl::OkStatus();
        };
        Stmt open_reply(db, "SELECT 1 FROM obligation WHERE peer = ? AND side = ? AND seq = ? "
                            "AND state = 1");
        // Whether the item at (peer, side, seq) is open (a reply owed either way).
        auto owes = [&](absl::string_view peer, int side, int64_t seq) -> absl::StatusOr<bool> {
          open_reply.Bind(1, peer).Bind(2, int64_t{side}).Bind(3, seq);
          const bool open = open_reply.Step();
          RETURN_IF_ERROR(open_reply.status("read to-do item"));
          open_reply.Reset();
          return open;
        };
        auto column_time = [](int col) {
          return [col](Stmt& r) -> absl::StatusOr<int64_t> { return r.Int(col); };
        };
        // Published here: every destination acknowledged its sequence, and no reply is open.
        std::map<std::string, int64_t> acked;
        {
          Stmt c(db, "SELECT destination, acked FROM channel");
          while (c.Step()) acked[c.Text(0)] = c.Int(1);
          RETURN_IF_ERROR(c.status("read channels"));
        }
        Stmt notices(db, "SELECT rowid, published_at, notice_id, deliveries, bytes FROM notice "
                         "WHERE rowid > ? AND length(bytes) > 0 ORDER BY rowid LIMIT ?");
        Stmt clear_notice(db, "UPDATE notice SET bytes = ? WHERE rowid = ?");
        Stmt clear_copy(db, "UPDATE shared_copy SET bytes = ? WHERE destination = ? AND seq = ?");
        RETURN_IF_ERROR(scan(scans[0], notices, column_time(1), [&](Stmt& r) -> absl::StatusOr<bool> {
          const std::string id = r.Text(2);
          ASSIGN_OR_RETURN(const auto deliveries, ParseDeliveries(r.Text(3)));
          for (const auto& [destination, seq] : deliveries) {
            auto it = acked.find(destination);
            if (it == acked.end() || it->second < seq) return false;
            ASSIGN_OR_RETURN(const bool open, owes(destination, kOwedToUs, seq));
            if (open) return false;
          }
          RETURN_IF_ERROR(forget(r.Blob(4), NoticeContext(id), id));
          clear_notice.BindBlob(1, "").Bind(2, r.Int(0));
          RETURN_IF_ERROR(Done(clear_notice, "purge notice"));
          for (const auto& [destination, seq] : deliveries) {
            clear_copy.BindBlob(1, "").Bind(2, destination).Bind(3, seq);
            RETURN_IF_ERROR(Done(clear_copy, "purge shared copy"));
          }
          ++counts.published;
          return true;
        }));
        // Received: the consumer took it (it was receipted when stored), and no reply is owed.
        Stmt inbox(db, "SELECT inbox_seq, received_at, origin, notice_id, acked_at IS NOT NULL, "
                       "bytes, channel_seq FROM inbox WHERE inbox_seq > ? AND length(bytes) > 0 "
                       "ORDER BY inbox_seq LIMIT ?");
        Stmt clear_inbox(db, "UPDATE inbox SET bytes = ? WHERE inbox_seq = ?");
        RETURN_IF_ERROR(scan(scans[1], inbox, column_time(1), [&](Stmt& r) -> absl::StatusOr<bool> {
          if (r.Int(4) == 0) return false;
          ASSIGN_OR_RETURN(const bool open, owes(r.Text(2), kOwedByUs, r.Int(6)));
          if (open) return false;
          RETURN_IF_ERROR(forget(r.Blob(5), InboxContext(r.Text(2), r.Int(6)), r.Int(0)));
          clear_inbox.BindBlob(1, "").Bind(2, r.Int(0));
          RETURN_IF_ERROR(Done(clear_inbox, "purge inbox"));
          ++counts.received;
          return true;
        }));
        // Query answers (received, and sent under the sharing policy) hold notices: the message goes; its digest (the evidence row's
        // and the log entry's) and the signature stay. Aged by this node's QUERY_ASKED entry
        // or QUERY_ANSWERED entry (its own clock), never by the time a peer wrote in an answer.
        Stmt answers(db, "SELECT e.id, l.bytes FROM evidence e JOIN log_leaf l ON l.idx = "
                         "e.log_index WHERE e.id > ? AND e.kind IN (5, 7) AND length(e.message) > 0 "
                         "ORDER BY e.id LIMIT ?");
        Stmt clear_answer(db, "UPDATE evidence SET message = ? WHERE id = ?");
        auto answered_at = [](Stmt& r) -> absl::StatusOr<int64_t> {
          v1::LogEntry entry;
          const absl::string_view b = r.Blob(1);
          if (!entry.ParseFromArray(b.data(), static_cast<int>(b.size()))) {
            return absl::DataLossError("purge: the log entry of a query answer does not parse");
          }
          return common::EntryMicros(entry);
        };
        return scan(scans[2], answers, answered_at, [&](Stmt& r) -> absl::StatusOr<bool> {
          clear_answer.BindBlob(1, "").Bind(2, r.Int(0));
          RETURN_IF_ERROR(Done(clear_answer, "purge query answer"));
          ++counts.answers;
          return true;
        });
      },
      [] {}));
  for (int i = 0; i < 3; ++i) purge_[i] = scans[i];
  if (counts.published + counts.received + counts.answers > 0) truncate_wal_ = true;
  return counts;
}

}  // namespace caseway::server
