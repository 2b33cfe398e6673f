// The prepared statements of NoticeStore's writer connection (private to notice_store*.cc).
#ifndef CASEWAY_SERVER_STORE_STATEMENTS_H_
#define CASEWAY_SERVER_STORE_STATEMENTS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "server/store/notice_store.h"
#include "server/store/sql.h"

namespace caseway::server {

// The columns of table obligation that NoticeStore::FillTodoItem reads, in its order.
inline constexpr char kTodoColumns[] =
    "side, peer, origin, notice_id, case_id, kind, priority, opened_at, due, stated_due, state, "
    "cleared_by, cleared_at";

// ParseDeliveries reads notice.deliveries ("dest:seq,dest:seq", in destination order).
absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> ParseDeliveries(absl::string_view text);

// obligation.side (caseway.v1.TodoRequest.Side): this node owes the peer a reply, or is owed one.
inline constexpr int kOwedByUs = caseway::v1::TodoRequest::SIDE_OWED_BY_US;
inline constexpr int kOwedToUs = caseway::v1::TodoRequest::SIDE_OWED_TO_US;

// TodoKey is a to-do item's key (table obligation, since version 10): the peer, the side, and its
// notice's seq on the channel between this node and the peer.
struct TodoKey {
  std::string peer;
  int side = 0;
  int64_t seq = 0;
};
// TodoKeysOf returns the keys the items of notice (origin, notice_id) have, whether or not the
// notice opened them: for a notice published here (origin == self), side 2 at each destination,
// from notice.deliveries; for one `origin` sent, side 1 at `origin`, from its first inbox row
// (the lowest channel_seq: a notice sent twice has one item). None for a notice the node does
// not hold: so it also says whether the node holds one. Runs on `db`'s prepared statements.
absl::StatusOr<std::vector<TodoKey>> TodoKeysOf(Db* db, const std::string& self,
                                                const std::string& origin,
                                                const std::string& notice_id);

// SubjectSalt returns the database's salt for subject keys, made on first use (notice_store_case.cc).
absl::StatusOr<std::string> SubjectSalt(Db& db);
// IndexExistingCases fills case_index for the notices of a database made before version 5.
absl::Status IndexExistingCases(Db& db, const std::string& salt);

// WriterStatements are prepared once on the writer connection and used only by its thread.
struct NoticeStore::WriterStatements {
  explicit WriterStatements(Db* db)
      : find_notice(db, "SELECT coalesce(request_digest, digest), deliveries FROM notice "
                        "WHERE notice_id = ?"),
        insert_notice(db, "INSERT INTO notice(notice_id, digest, bytes, published_at, deliveries, "
                          "request_digest) VALUES(?, ?, ?, ?, ?, ?)"),
        head(db, "SELECT head FROM channel WHERE destination = ?"),
        upsert_head(db, "INSERT INTO channel(destination, head) VALUES(?, ?) "
                        "ON CONFLICT(destination) DO UPDATE SET head = excluded.head"),
        insert_entry(db, "INSERT INTO channel_entry(destination, seq, notice_id) VALUES(?, ?, ?)"),
        ack(db, "UPDATE channel SET acked = ? WHERE destination = ? AND acked < ?"),
        cursor(db, "SELECT seq FROM cursor WHERE origin = ?"),
        upsert_cursor(db, "INSERT INTO cursor(origin, seq) VALUES(?, ?) "
                          "ON CONFLICT(origin) DO UPDATE SET seq = excluded.seq"),
        insert_inbox(db, "INSERT INTO inbox(origin, channel_seq, notice_id, bytes, received_at) "
                         "VALUES(?, ?, ?, ?, ?) RETURNING inbox_seq"),
        ack_inbox(db, "UPDATE inbox SET acked_at = ? WHERE inbox_seq = ? AND acked_at IS NULL"),
        inbox_exists(db, "SELECT 1 FROM inbox WHERE inbox_seq = ?"),
        insert_case(db, "INSERT INTO case_index_new(key, ref) VALUES(?, ?) RETURNING id"),
        insert_access(db, "INSERT INTO access(at, who, what, purpose, peer, notices) "
                          "VALUES(?, ?, ?, ?, ?, ?) RETURNING id"),
        insert_access_subject(db, "INSERT INTO access_subject(subject, access) "
                                  "VALUES(?, ?) ON CONFLICT DO NOTHING"),
        insert_copy(db, "INSERT INTO shared_copy(destination, seq, bytes) VALUES(?, ?, ?)") {}

  absl::Status Check() const {
    for (const Stmt* s : {&find_notice, &insert_notice, &head, &upsert_head,
                          &insert_entry, &ack, &cursor, &upsert_cursor, &insert_inbox, &ack_inbox,
                          &inbox_exists, &insert_case, &insert_access, &insert_access_subject,
                          &insert_copy}) {
      RETURN_IF_ERROR(s->status("prepare writer statement"));
    }
    return absl::OkStatus();
  }

  Stmt find_notice, insert_notice, head, upsert_head, insert_entry, ack, cursor,
      upsert_cursor, insert_inbox, ack_inbox, inbox_exists, insert_case, insert_access,
      insert_access_subject, insert_copy;
};

// LogStatements are prepared on the writer connection and used only by its thread.
struct NoticeStore::LogStatements {
  explicit LogStatements(Db* db)
      : insert_evidence(db,
                        "INSERT INTO evidence(kind, peer, first_seq, last_seq, digest, message, "
                        "signature, log_index) VALUES(?, ?, ?, ?, ?, ?, ?, ?)"),
        raise_acked(db, "UPDATE channel SET acked = ? WHERE destination = ? AND acked < ?"),
        insert_checkpoint(db, "INSERT INTO checkpoint(size, root, note, created_at) "
                              "VALUES(?, ?, ?, ?) ON CONFLICT DO NOTHING"),
        insert_cosignature(db, "INSERT INTO cosignature(size, witness, line) VALUES(?, ?, ?) "
                               "ON CONFLICT(size, witness) DO UPDATE SET line = excluded.line"),
        upsert_witnessed(db, "INSERT INTO witnessed(peer, size, root, note) VALUES(?, ?, ?, ?) "
                             "ON CONFLICT(peer) DO UPDATE SET size = excluded.size, "
                             "root = excluded.root, note = excluded.note") {}
  Stmt insert_evidence, raise_acked, insert_checkpoint, insert_cosignature, upsert_witnessed;
};

// TodoStatements keep the to-do items (table obligation) on the writer connection.
struct NoticeStore::TodoStatements {
  explicit TodoStatements(Db* db)
      : open_item(db,
                  "INSERT INTO obligation(peer, side, seq, origin, notice_id, case_id, kind, "
                  "priority, opened_at, due, stated_due, state) "
                  "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT DO NOTHING"),
        find_item(db, "SELECT state, superseded_by FROM obligation "
                      "WHERE peer = ? AND side = ? AND seq = ?"),
        settle_item(db, "UPDATE obligation SET state = ?, cleared_by = ?, cleared_at = ?, "
                        "superseded_by = ? WHERE peer = ? AND side = ? AND seq = ?"),
        insert_anomaly(db, "INSERT INTO anomaly(peer, notice_id, received_at, problem) "
                           "VALUES(?, ?, ?, ?)") {}
  Stmt open_item, find_item, settle_item, insert_anomaly;
};

// ReadOnly runs `fn` with a pooled read connection.
template <typename Fn>
auto NoticeStore::ReadOnly(Fn fn) -> decltype(fn(static_cast<Db*>(nullptr))) {
  auto db = AcquireReader();
  if (!db.ok()) return db.status();
  auto result = fn(db->get());
  ReleaseReader(std::move(*db));
  return result;
}

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_STATEMENTS_H_
