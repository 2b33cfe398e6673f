// The coordinator's tools: verify a node's exchange log, reconcile two nodes, check bundles.
#ifndef CASEWAY_CLIENT_AUDIT_AUDITOR_H_
#define CASEWAY_CLIENT_AUDIT_AUDITOR_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "caseway/v1/audit.pb.h"
#include "caseway/v1/exchange_log.grpc.pb.h"
#include "client/audit/assessment.h"
#include "common/directory.h"
#include "common/merkle.h"
#include "common/sharing.h"
#include "common/signing.h"

namespace caseway::client::audit {

// The purpose the coordinator's tools give when they read notices (GetNotices, GetEvidence of
// query answers, GetNoticeEvidence): the nodes keep it in their access logs (docs/privacy.md).
inline constexpr char kAuditPurpose[] = "exchange audit by a joint-meeting coordinator (caseway audit)";

// AuditOptions configure an Auditor.
struct AuditOptions {
  // Where the last verified checkpoint of each node is kept (one file per jurisdiction).
  std::string state_dir;
  // Where evidence bundles are written (created if missing).
  std::string bundle_dir;
  // Exchanges younger than this are PENDING rather than UNDELIVERED.
  absl::Duration grace = absl::Minutes(10);
  // Show a running count of fetched entries on stderr.
  bool progress = false;
  // Write a bundle for every exchange, not only for findings.
  bool bundle_all = false;
  // A checkpoint older than this while the node's log is larger is STALE_CHECKPOINT.
  absl::Duration stale = absl::Minutes(2);
  // Fetch the notice bytes each node serves and compare them with the logged digests.
  bool check_notices = true;
};

// NodeLog is one node's log as fetched and verified by the auditor.
struct NodeLog {
  std::string address;
  std::string jurisdiction;
  std::string note;  // the signed checkpoint note (with cosignatures)
  common::Checkpoint checkpoint;
  std::vector<std::string> cosigners;  // jurisdictions whose cosignature/v1 verified
  uint64_t log_size = 0;               // the node's committed size as it reports it (unsigned)
  std::string halted;                  // the node's own integrity-failure report, if any
  // The node's clock minus the auditor's, from the time it gave with its checkpoint (zero when it
  // gave none); never behind its signed checkpoint's time.
  absl::Duration clock_offset = absl::ZeroDuration();
  // Now, on the node's clock: how old the node's own claims are is measured with it.
  absl::Time NodeNow() const;
  std::vector<std::string> entries;    // exact bytes, by position
  std::vector<caseway::v1::LogEntry> parsed;
  common::LeafTree tree;               // leaf hashes of `entries`: roots and proofs, computed here
  bool corrupt = false;                // the entries do not rebuild the signed root
  std::unique_ptr<caseway::v1::ExchangeLog::Stub> stub;
};

// Finding is a problem found by verify (FORK, ROLLBACK, LOG_FORMAT, LOG_CORRUPT, TRUNCATED,
// STALE_CHECKPOINT, NOTICE_BYTES, HALTED, SIGNATURE) with its bundle.
struct Finding {
  std::string status;
  std::string detail;
  caseway::v1::EvidenceBundle bundle;
};

// Row is one exchange classified by reconcile.
struct Row {
  std::string origin, destination;
  uint64_t seq = 0;
  std::string notice_id;
  std::string status;
  std::string detail;
  caseway::v1::EvidenceBundle bundle;  // filled for findings (or all rows with bundle_all)
};

// ReconcileReport is the outcome of Reconcile.
struct ReconcileReport {
  std::vector<Row> rows;
  std::vector<Finding> findings;  // SPLIT_VIEW and verify findings
};

// Statuses that count as problems (exit status 1).
bool IsProblem(const std::string& status);

// FetchInclusionProof and FetchConsistencyProof ask a node for a proof (verification is the
// caller's: the node is not trusted).
absl::StatusOr<std::vector<std::string>> FetchInclusionProof(caseway::v1::ExchangeLog::Stub& stub,
                                                             uint64_t index, uint64_t tree_size);
absl::StatusOr<std::vector<std::string>> FetchConsistencyProof(
    caseway::v1::ExchangeLog::Stub& stub, uint64_t first, uint64_t second);

// FetchEvidence pages through the node's signed manifests and receipts for `peer` in one
// direction.
absl::StatusOr<std::vector<caseway::v1::Evidence>> FetchEvidence(
    NodeLog& log, const std::string& peer, caseway::v1::GetEvidenceRequest::Direction direction);

// Auditor talks to nodes with an auditor certificate and judges them against the federation
// directory. Thread-compatible.
class Auditor {
 public:
  Auditor(AuditOptions options, common::Directory directory,
          std::shared_ptr<grpc::ChannelCredentials> credentials);

  // Verify fetches the node's checkpoint (its signature must verify with the directory key) and
  // every entry it covers, and turns every inconsistency into a finding with a bundle:
  // TRUNCATED (fewer entries served than signed), LOG_CORRUPT (the entries do not rebuild the
  // signed root; names the first that does not prove into it), LOG_FORMAT (a non-canonical entry
  // or one dated before its predecessor), FORK or ROLLBACK (against the checkpoint saved at the
  // last audit), STALE_CHECKPOINT, HALTED (the node reports an integrity failure) and
  // NOTICE_BYTES (served notice bytes whose digest is not the one logged or signed). Saves the
  // checkpoint as the new state only when it extends the saved one. Errors are for what prevents
  // the audit (unreachable node, unknown key).
  absl::StatusOr<NodeLog> Verify(const std::string& address, std::vector<Finding>* findings);

  // Reconcile classifies every exchange between two verified nodes, both directions.
  absl::StatusOr<ReconcileReport> Reconcile(NodeLog& a, NodeLog& b);

  // CollectHistory gathers what the assessment needs from verified logs (assessment.h): every
  // PUBLISHED entry's facts and deliveries, the receipts each origin holds (signatures checked
  // against the directory; an invalid one counts as no receipt), and the bounds the other logs'
  // cosignatures put on each entry's time.
  absl::StatusOr<History> CollectHistory(const std::vector<NodeLog*>& logs);
  // The same one log at a time, so that each can be dropped once folded in (the report over a
  // large federation never holds more than one log): CollectInto each, then FinishHistory.
  absl::Status CollectInto(NodeLog& log, History& history);
  void FinishHistory(History& history);

  // WriteBundle writes `bundle` as JSON under bundle_dir and returns the path.
  absl::StatusOr<std::string> WriteBundle(const caseway::v1::EvidenceBundle& bundle,
                                          const std::string& name);

  const common::Directory& directory() const { return directory_; }

 private:
  // ReconcileQueries pairs `asker`'s QUERY_ASKED entries (and the signed answers it keeps) with
  // `answerer`'s QUERY_ANSWERED entries: ANSWERED, ANSWER_NOT_LOGGED, QUESTION_NOT_LOGGED,
  // UNSUPPORTED or PENDING rows (docs/coordinators.md).
  absl::Status ReconcileQueries(NodeLog& asker, NodeLog& answerer, ReconcileReport& report);
  absl::Status ReconcileChannel(NodeLog& origin, NodeLog& dest, ReconcileReport& report);
  absl::Status CheckView(NodeLog& holder, NodeLog& subject, ReconcileReport& report);
  // FetchEntries fills log.entries up to the checkpoint size or the first refusal.
  absl::Status FetchEntries(NodeLog& log);
  // FirstBadEntry bisects with the node's consistency proofs for the first entry whose prefix
  // does not prove into the signed root (nullopt when the proofs cannot tell).
  std::optional<uint64_t> FirstBadEntry(NodeLog& log);
  // CheckNotices compares the notice bytes the node serves with the digests its log and the
  // signed manifests give; appends NOTICE_BYTES findings.
  absl::Status CheckNotices(NodeLog& log, std::vector<Finding>* findings);
  // ForEachEvidence calls `fn` with every evidence row `req` selects at the node, page by page.
  absl::Status ForEachEvidence(NodeLog& log, caseway::v1::GetEvidenceRequest req,
                               const std::function<void(const caseway::v1::Evidence&)>& fn);
  // CheckAnswersSent checks the answers the node gave under its sharing policy (its
  // QUERY_ANSWERED entries with a policy digest, per party: the entry's index and the policy in
  // force then) against that policy, from the signed copies the node keeps: a notice beyond it
  // is BEYOND_POLICY; an answer the node cannot show, or shows otherwise than its log records,
  // is POLICY_UNPROVEN.
  absl::Status CheckAnswersSent(
      NodeLog& log,
      const std::map<std::string, std::vector<std::pair<uint64_t, const common::SharingPolicy*>>>&
          answers,
      std::vector<Finding>* findings);
  // SharingPolicies fetches the sharing policies the node's log records (signed by it), by
  // digest; a recorded policy the node cannot show is a POLICY_UNPROVEN finding.
  absl::StatusOr<std::map<std::string, common::SharingPolicy>> SharingPolicies(
      NodeLog& log, std::vector<Finding>* findings);
  // AddEntry appends entry `index` of `log` with its inclusion proof to `bundle`.
  absl::Status AddEntry(NodeLog& log, uint64_t index, caseway::v1::EvidenceBundle& bundle);
  caseway::v1::EvidenceBundle NewBundle(const std::string& status, const std::string& detail,
                                        const std::vector<const NodeLog*>& logs);

  AuditOptions options_;
  common::Directory directory_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
};

// VerifyBundle checks a bundle offline against `directory` (or, when null, against keys it was
// told to trust): checkpoint signatures, inclusion proofs, manifest and receipt signatures, and
// the facts its status claims. Returns the lines of the report; the status is OK when the bundle
// supports its claim, FAILED_PRECONDITION naming the first check that fails otherwise.
absl::StatusOr<std::vector<std::string>> VerifyBundle(const caseway::v1::EvidenceBundle& bundle,
                                                      const common::Directory& directory);

}  // namespace caseway::client::audit

#endif  // CASEWAY_CLIENT_AUDIT_AUDITOR_H_
