// CaseStore: cases, remote queries, replies and the to-do list as the store holds them, for the
// gateway (Gateway.Case, Todo, QueryPeer) and the peer exchange (answering Query, the feed).
#ifndef CASEWAY_SERVER_STORE_CASE_STORE_H_
#define CASEWAY_SERVER_STORE_CASE_STORE_H_

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "caseway/v1/gateway.pb.h"
#include "caseway/v1/peer_exchange.pb.h"
#include "server/store/access_log.h"
#include "server/store/signer.h"

namespace caseway::server {

// CaseRecord is one notice of a case as this node holds it.
struct CaseRecord {
  caseway::v1::QueryNotice::Role role = caseway::v1::QueryNotice::ROLE_UNSPECIFIED;
  std::string origin;  // the notice's origin: this node when published here
  std::string notice_id;
  std::string bytes;   // exact, as stored
  absl::Time stored_at;
  // Published: (destination, channel seq) in destination order.
  std::vector<std::pair<std::string, uint64_t>> deliveries;
  // Received: the channel seq from `origin`, and whether the local consumer acked it.
  uint64_t channel_seq = 0;
  bool consumed = false;
  // ReadFeed: the notice's place among those published here (its row) or received (inbox_seq).
  uint64_t position = 0;
};

// CaseStore finds notices by case and by subject (a salted index, never a scan), reads the
// departments' feed, and keeps the signed answers of remote queries given and received, each read
// recorded in the access log in the same transaction. Implemented by NoticeStore
// (notice_store_case.cc, notice_store_todo.cc), on SQLite and PostgreSQL. Thread-safe.
class CaseStore {
 public:
  virtual ~CaseStore() = default;

  // FindCase returns the notices held for a case id, or with `by_subject` for a subject's
  // identity number (looked up by its salted digest, never scanned), oldest stored first: at most
  // `limit`, `*truncated` set when more follow. With a `party`, only the notices that
  // jurisdiction is a party to count (published to it, received from it, or received with it
  // among the destinations): `limit` and `truncated` then concern those alone. At most 100,000
  // index rows of one key are looked at (without a party, `truncated` then says so too).
  // With `kinds`, only notices of those kinds count (a department's grant), likewise.
  virtual absl::StatusOr<std::vector<CaseRecord>> FindCase(
      absl::string_view key, bool by_subject, size_t limit, bool* truncated,
      const std::string& party = "", const std::set<std::string>* kinds = nullptr) = 0;
  // ReadFeed returns the notices of `kinds` stored after `after`: those published here, then
  // those received, each in the order stored, at most `limit` in all. `*next` is where the next
  // read starts (past the notices returned and the ones of other kinds passed over); `*more` is
  // set when notices after it may match already (at most 10,000 rows of each table are looked
  // at per call, so a feed of a rare kind advances in steps).
  virtual absl::StatusOr<std::vector<CaseRecord>> ReadFeed(
      const caseway::v1::FeedPosition& after, const std::set<std::string>& kinds, size_t limit,
      caseway::v1::FeedPosition* next, bool* more) = 0;
  // ReceivedFrom lists the origins from which a notice `notice_id` was received (indexed).
  virtual absl::StatusOr<std::vector<std::string>> ReceivedFrom(const std::string& notice_id) = 0;

  // RepliesOf returns the to-do items (open and cleared) of the notice (origin, notice_id).
  virtual absl::StatusOr<std::vector<caseway::v1::TodoItem>> RepliesOf(
      const std::string& origin, const std::string& notice_id, absl::Time now) = 0;
  // Todo answers Gateway.Todo at `now` (the request already validated).
  virtual absl::StatusOr<caseway::v1::TodoResponse> Todo(const caseway::v1::TodoRequest& request,
                                                         absl::Time now) = 0;

  // AnswerQuery completes `answer` (answerer, log_index, answered_at), has `sign_answer` sign
  // it, appends its
  // QUERY_ANSWERED entry and `access` to the access log and commits, in one transaction; returns
  // the signed answer. An answer under the sharing policy (sharing_policy_digest set) is kept
  // too, sealed, as evidence (KIND_QUERY_ANSWER_SENT) for a coordinator to check. Without the
  // exchange log the answer is returned unsigned and only `access` is stored.
  virtual absl::StatusOr<caseway::v1::Signed> AnswerQuery(caseway::v1::QueryAnswer answer,
                                                          const AccessEntry& access,
                                                          const Signer& sign_answer) = 0;
  // RecordQueryAsked appends QUERY_ASKED for `peer`'s verified answer, keeps the signed answer
  // as evidence (KIND_QUERY_ANSWER_RECEIVED) and appends `access`, in one transaction; returns
  // the entry's index (0 without the exchange log: then only `access` is stored).
  virtual absl::StatusOr<uint64_t> RecordQueryAsked(const std::string& peer,
                                                    const caseway::v1::QueryAnswer& answer,
                                                    const caseway::v1::Signed& signed_answer,
                                                    const AccessEntry& access) = 0;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_CASE_STORE_H_
