#include "client/audit/auditor.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/grpc_status.h"
#include "common/identity.h"
#include "common/digest.h"
#include "common/log_entry.h"
#include "client/audit/evidence.h"
#include "common/merkle.h"
#include "common/status_macros.h"

namespace caseway::client::audit {

namespace fs = std::filesystem;
using common::FromGrpcStatus;
using google::protobuf::util::TimeUtil;

namespace {

constexpr uint64_t kPage = 1000;

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(30);
}


}  // namespace

absl::StatusOr<std::vector<std::string>> FetchInclusionProof(v1::ExchangeLog::Stub& stub,
                                                             uint64_t index, uint64_t tree_size) {
  v1::GetInclusionProofRequest req;
  req.set_index(index);
  req.set_tree_size(tree_size);
  v1::ProofResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  RETURN_IF_ERROR(FromGrpcStatus(stub.GetInclusionProof(&ctx, req, &resp)));
  return std::vector<std::string>(resp.hashes().begin(), resp.hashes().end());
}

absl::StatusOr<std::vector<std::string>> FetchConsistencyProof(v1::ExchangeLog::Stub& stub,
                                                               uint64_t first, uint64_t second) {
  v1::GetConsistencyProofRequest req;
  req.set_first(first);
  req.set_second(second);
  v1::ProofResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  RETURN_IF_ERROR(FromGrpcStatus(stub.GetConsistencyProof(&ctx, req, &resp)));
  return std::vector<std::string>(resp.hashes().begin(), resp.hashes().end());
}

bool IsProblem(const std::string& status) {
  return status != "MATCHED" && status != "PROVEN" && status != "PENDING" && status != "ANSWERED";
}

Auditor::Auditor(AuditOptions options, common::Directory directory,
                 std::shared_ptr<grpc::ChannelCredentials> credentials)
    : options_(std::move(options)),
      directory_(std::move(directory)),
      credentials_(std::move(credentials)) {}

v1::EvidenceBundle Auditor::NewBundle(const std::string& status, const std::string& detail,
                                      const std::vector<const NodeLog*>& logs) {
  v1::EvidenceBundle b;
  b.set_status(status);
  b.set_detail(detail);
  b.set_federation(directory_.federation());
  *b.mutable_created_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(common::Now()));
  for (const NodeLog* log : logs) {
    auto* c = b.add_checkpoints();
    c->set_jurisdiction(log->jurisdiction);
    c->set_note(log->note);
  }
  return b;
}

absl::Status Auditor::AddEntry(NodeLog& log, uint64_t index, v1::EvidenceBundle& bundle) {
  if (index >= log.entries.size()) {
    return absl::OutOfRangeError(absl::StrCat(log.jurisdiction, ": no entry ", index));
  }
  // The proof is computed from the leaves fetched and checked against the signed root, never
  // taken from the node.
  ASSIGN_OR_RETURN(auto proof, common::InclusionProof(index, log.checkpoint.size, log.tree.Subtree()));
  auto* e = bundle.add_entries();
  e->set_jurisdiction(log.jurisdiction);
  e->set_index(index);
  e->set_entry(log.entries[index]);
  e->set_tree_size(log.checkpoint.size);
  for (auto& h : proof) e->add_proof(std::move(h));
  return absl::OkStatus();
}

absl::StatusOr<std::string> Auditor::WriteBundle(const v1::EvidenceBundle& bundle,
                                                 const std::string& name) {
  std::error_code ec;
  fs::create_directories(options_.bundle_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(options_.bundle_dir, ": ", ec.message()));
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  print.add_whitespace = true;
  print.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(bundle, &json, print);
  std::string path = absl::StrCat(options_.bundle_dir, "/", name, ".json");
  std::ofstream out(path, std::ios::trunc);
  out << json;
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  return path;
}

absl::Status Auditor::FetchEntries(NodeLog& log) {
  for (uint64_t start = 0; start < log.checkpoint.size;) {
    v1::GetEntriesRequest req;
    req.set_start(start);
    req.set_end(std::min(log.checkpoint.size, start + kPage));
    v1::GetEntriesResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    grpc::Status st = log.stub->GetEntries(&ctx, req, &resp);
    // A node that no longer holds what it signed is a finding (TRUNCATED), not a failed audit.
    if (st.error_code() == grpc::StatusCode::OUT_OF_RANGE) return absl::OkStatus();
    RETURN_IF_ERROR(FromGrpcStatus(st));
    if (resp.entries_size() == 0) return absl::OkStatus();
    for (auto& e : *resp.mutable_entries()) {
      if (log.entries.size() >= log.checkpoint.size) break;
      log.tree.Add(common::LeafHash(e));
      log.entries.push_back(std::move(e));
    }
    start = log.entries.size();
    if (options_.progress) {
      fprintf(stderr, "\r%s: %zu/%llu entries", log.jurisdiction.c_str(), log.entries.size(),
              static_cast<unsigned long long>(log.checkpoint.size));
    }
  }
  if (options_.progress) fprintf(stderr, "\n");
  return absl::OkStatus();
}

std::optional<uint64_t> Auditor::FirstBadEntry(NodeLog& log) {
  const uint64_t n = log.checkpoint.size;
  // good(k): the first k entries served, proven into the signed root with the node's own proof.
  auto good = [&](uint64_t k) -> std::optional<bool> {
    if (k == 0) return true;
    auto proof = FetchConsistencyProof(*log.stub, k, n);
    if (!proof.ok()) return std::nullopt;
    return common::VerifyConsistency(k, n, *proof, log.tree.Root(k), log.checkpoint.root).ok();
  };
  uint64_t lo = 0, hi = std::min<uint64_t>(log.entries.size(), n);
  auto top = good(hi);
  if (!top.has_value() || *top) return std::nullopt;  // nothing served is contradicted
  while (hi - lo > 1) {
    const uint64_t mid = lo + (hi - lo) / 2;
    auto g = good(mid);
    if (!g.has_value()) return std::nullopt;
    (*g ? lo : hi) = mid;
  }
  return lo;
}

absl::Time NodeLog::NodeNow() const { return common::Now() + clock_offset; }

absl::StatusOr<NodeLog> Auditor::Verify(const std::string& address,
                                        std::vector<Finding>* findings) {
  NodeLog log;
  log.address = address;
  log.stub = v1::ExchangeLog::NewStub(grpc::CreateChannel(address, credentials_));
  v1::CheckpointResponse cp;
  std::shared_ptr<const grpc::AuthContext> peer;
  absl::Time asked, answered;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    asked = common::Now();
    RETURN_IF_ERROR(FromGrpcStatus(log.stub->GetCheckpoint(&ctx, v1::GetCheckpointRequest(), &cp)));
    answered = common::Now();
    peer = ctx.auth_context();
  }
  log.note = cp.note();
  log.log_size = cp.log_size();
  log.halted = cp.halted();
  ASSIGN_OR_RETURN(common::Note note, common::ParseNote(log.note));
  ASSIGN_OR_RETURN(log.checkpoint, common::ParseCheckpointBody(note.body));
  ASSIGN_OR_RETURN(log.jurisdiction, directory_.JurisdictionOf(log.checkpoint.origin));
  // The address must be the node whose log it serves (its TLS certificate names it).
  auto id = peer ? common::IdentityFromAuthContext(*peer, directory_.federation())
                 : absl::StatusOr<common::Identity>(absl::UnauthenticatedError("no peer identity"));
  if (!id.ok() || id->role != common::Role::kNode || id->jurisdiction != log.jurisdiction) {
    return absl::PermissionDeniedError(absl::StrCat(
        address, " serves the log of ", log.jurisdiction, " but is not spiffe://",
        directory_.federation(), "/node/", log.jurisdiction));
  }
  if (absl::Status s = directory_.VerifyCheckpoint(note, log.jurisdiction); !s.ok()) {
    Finding f{"SIGNATURE", absl::StrCat(log.jurisdiction, ": checkpoint signature: ", s.message()),
              NewBundle("SIGNATURE", "", {&log})};
    findings->push_back(std::move(f));
    return log;
  }
  for (const auto& [j, keys] : directory_.keys()) {
    if (j != log.jurisdiction && directory_.VerifyCosignatureOf(note, j).ok()) {
      log.cosigners.push_back(j);
    }
  }
  auto observed = [&](const std::string& status, const std::string& detail) -> Finding& {
    Finding f{status, detail, NewBundle(status, detail, {&log})};
    f.bundle.set_origin(log.jurisdiction);
    findings->push_back(std::move(f));
    return findings->back();
  };
  if (!log.halted.empty()) {
    observed("HALTED", absl::StrCat(log.jurisdiction, " reports that it halted: ",
                                    log.halted.substr(0, 1024)));
  }
  const absl::Time signed_at = absl::FromUnixSeconds(log.checkpoint.time);
  if (cp.has_now()) {
    // The node's reading, against the middle of the call on ours; a node cannot claim to be
    // earlier than the checkpoint it signed.
    const absl::Time theirs = std::max(common::TimeOf(cp.now()), signed_at);
    log.clock_offset = theirs - (asked + (answered - asked) / 2);
  }
  if (log.checkpoint.time > 0 && log.log_size > log.checkpoint.size &&
      log.NodeNow() - signed_at > options_.stale) {
    observed("STALE_CHECKPOINT",
             absl::StrCat(log.jurisdiction, ": its latest checkpoint (", log.checkpoint.size,
                          " entries) was signed at ", absl::FormatTime(signed_at),
                          ", but its log now holds ", log.log_size, " entries"));
  }

  // Every entry, and the root rebuilt from them.
  RETURN_IF_ERROR(FetchEntries(log));
  const bool truncated = log.entries.size() < log.checkpoint.size;
  if (truncated) {
    observed("TRUNCATED", absl::StrCat(log.jurisdiction, " signed a checkpoint of ",
                                       log.checkpoint.size, " entries but serves only ",
                                       log.entries.size()));
  }
  log.corrupt = truncated || log.tree.Root(log.checkpoint.size) != log.checkpoint.root;
  log.parsed.resize(log.entries.size());
  std::optional<std::pair<uint64_t, std::string>> format_error;
  int64_t last_micros = 0;
  for (size_t i = 0; i < log.entries.size(); ++i) {
    auto e = common::ParseLogEntry(log.entries[i], i);
    if (e.ok()) {
      log.parsed[i] = std::move(*e);
      const int64_t micros = common::EntryMicros(log.parsed[i]);
      if (micros < last_micros && !format_error) {
        format_error.emplace(i, absl::StrCat("entry ", i, " is dated before entry ", i - 1));
      }
      last_micros = std::max(last_micros, micros);
    } else {
      log.parsed[i].ParseFromString(log.entries[i]);  // best effort, for reconciliation
      if (!format_error) format_error.emplace(i, std::string(e.status().message()));
    }
  }
  const std::string state_path = absl::StrCat(options_.state_dir, "/", log.jurisdiction, ".checkpoint");
  if (log.corrupt && !truncated) {
    std::optional<uint64_t> first = FirstBadEntry(log);
    // The node's proofs come from its stored hashes, which may have been rewritten too: a prefix
    // that rebuilds the root this auditor verified last time is original, whatever they say.
    if (auto saved = common::ReadFile(state_path); saved.ok() && first) {
      auto note = common::ParseNote(*saved);
      auto earlier = note.ok() ? common::ParseCheckpointBody(note->body)
                               : absl::StatusOr<common::Checkpoint>(note.status());
      if (earlier.ok() && earlier->size <= log.entries.size() &&
          log.tree.Root(earlier->size) == earlier->root) {
        first = std::max(*first, earlier->size);
      }
    }
    std::string detail = absl::StrCat(log.jurisdiction, ": the entries do not rebuild the signed root");
    if (first) {
      absl::StrAppend(&detail, "; entry ", *first,
                      " is the first that does not prove into it with the node's own proofs");
    }
    Finding& f = observed("LOG_CORRUPT", detail);
    if (first && *first < log.entries.size()) {
      f.bundle.set_first_bad_index(*first);
      f.bundle.add_corrupt_indices(*first);
      auto* e = f.bundle.add_entries();
      e->set_jurisdiction(log.jurisdiction);
      e->set_index(*first);
      e->set_entry(log.entries[*first]);
      e->set_tree_size(log.checkpoint.size);
      if (auto proof = FetchInclusionProof(*log.stub, *first, log.checkpoint.size); proof.ok()) {
        for (const auto& h : *proof) e->add_proof(h);
      }
    }
  } else if (format_error && !log.corrupt) {
    // Provable offline: the entry proves into the signed root and breaks the format.
    const uint64_t i = format_error->first;
    std::string detail = absl::StrCat(log.jurisdiction, ": ", format_error->second);
    Finding f{"LOG_FORMAT", detail, NewBundle("LOG_FORMAT", detail, {&log})};
    f.bundle.set_origin(log.jurisdiction);
    f.bundle.set_seq(i);
    if (i > 0) RETURN_IF_ERROR(AddEntry(log, i - 1, f.bundle));
    RETURN_IF_ERROR(AddEntry(log, i, f.bundle));
    findings->push_back(std::move(f));
  }

  // Consistency with what this auditor verified last time.
  bool consistent = !log.corrupt;
  if (auto saved = common::ReadFile(state_path); saved.ok()) {
    auto earlier_note = common::ParseNote(*saved);
    auto earlier = earlier_note.ok() ? common::ParseCheckpointBody(earlier_note->body)
                                     : absl::StatusOr<common::Checkpoint>(earlier_note.status());
    if (!earlier.ok()) return absl::DataLossError(absl::StrCat(state_path, ": ", earlier.status().message()));
    const uint64_t m = earlier->size, n = log.checkpoint.size;
    std::string status = "FORK", reason, prefix_root;
    std::vector<std::string> proof;
    if (m > n) {
      status = "ROLLBACK";
      reason = absl::StrCat("it signed a log of ", n, " entries after one of ", m);
    } else if (!log.corrupt) {
      // Provable offline: the root of our own first m entries, proven into the signed root of n.
      prefix_root = log.tree.Root(m);
      if (prefix_root != earlier->root) {
        ASSIGN_OR_RETURN(proof, common::ConsistencyProof(m, n, log.tree.Subtree()));
        reason = absl::StrCat("its first ", m, " entries have another root than it signed then");
      }
    } else if (m == n && earlier->root != log.checkpoint.root) {
      reason = absl::StrCat("it signed two roots for ", n, " entries");
    } else if (m < n) {
      auto fetched = FetchConsistencyProof(*log.stub, m, n);
      if (!fetched.ok() ||
          !common::VerifyConsistency(m, n, *fetched, earlier->root, log.checkpoint.root).ok()) {
        // Not provable offline while its entries contradict its own root: LOG_CORRUPT says it.
        findings->back().detail += absl::StrCat(
            "; nor does its checkpoint provably extend the one of ", m, " entries verified at "
            "the last audit");
        findings->back().bundle.set_detail(findings->back().detail);
        consistent = false;
      }
    }
    if (!reason.empty()) {
      consistent = false;
      std::string detail = absl::StrCat(
          log.jurisdiction, ": checkpoint of size ", n, " does not extend the checkpoint of size ",
          m, " verified at the last audit (", reason, ")");
      Finding f{status, detail, NewBundle(status, detail, {&log})};
      f.bundle.set_origin(log.jurisdiction);
      f.bundle.set_earlier_checkpoint(*saved);
      f.bundle.set_prefix_root(prefix_root);
      for (auto& h : proof) f.bundle.add_consistency_proof(h);
      findings->push_back(std::move(f));
    }
  }
  if (options_.check_notices && !log.corrupt) RETURN_IF_ERROR(CheckNotices(log, findings));
  if (consistent) {
    std::error_code ec;
    fs::create_directories(options_.state_dir, ec);
    std::ofstream out(state_path + ".tmp", std::ios::trunc);
    out << log.note;
    out.close();
    if (!out || std::rename((state_path + ".tmp").c_str(), state_path.c_str()) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(state_path, ": cannot save audit state"));
    }
  }
  return log;
}

absl::Status Auditor::ForEachEvidence(NodeLog& log, v1::GetEvidenceRequest req,
                                      const std::function<void(const v1::Evidence&)>& fn) {
  for (;;) {
    v1::GetEvidenceResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    RETURN_IF_ERROR(FromGrpcStatus(log.stub->GetEvidence(&ctx, req, &resp)));
    for (const v1::Evidence& ev : resp.evidence()) fn(ev);
    if (resp.next() == 0 || resp.next() <= req.after()) return absl::OkStatus();
    req.set_after(resp.next());
  }
}

absl::StatusOr<std::map<std::string, common::SharingPolicy>> Auditor::SharingPolicies(
    NodeLog& log, std::vector<Finding>* findings) {
  std::map<std::string, common::SharingPolicy> out;
  std::map<std::string, absl::Time> recorded;  // digest -> when its entry was appended
  for (const v1::LogEntry& e : log.parsed) {
    if (e.kind() == v1::LogEntry::KIND_SHARING_POLICY && !e.digest().empty()) {
      recorded.emplace(e.digest(), common::TimeOf(e.time()));
    }
  }
  if (recorded.empty()) return out;
  v1::GetEvidenceRequest req;
  req.set_direction(v1::GetEvidenceRequest::DIRECTION_SHARING_POLICIES);
  RETURN_IF_ERROR(ForEachEvidence(log, req, [&](const v1::Evidence& ev) {
    const std::string digest = common::Sha256(ev.signed_().message());
    auto when = recorded.find(digest);
    if (when == recorded.end()) return;
    if (!directory_.Verify(log.jurisdiction, when->second, common::kSharingPolicyContext,
                           ev.signed_().message(), ev.signed_().signature())
             .ok()) {
      return;
    }
    auto policy = common::SharingPolicy::FromBytes(ev.signed_().message());
    if (policy.ok()) out.emplace(digest, std::move(*policy));
  }));
  for (const auto& [digest, when] : recorded) {
    if (out.count(digest)) continue;
    std::string detail = absl::StrCat(
        log.jurisdiction, ": its log records sharing policy ", common::ToHex(digest).substr(0, 16),
        " but the node shows no copy of it signed by ", log.jurisdiction,
        ": what it shared under that policy cannot be checked");
    findings->push_back({"POLICY_UNPROVEN", detail, NewBundle("POLICY_UNPROVEN", detail, {&log})});
  }
  return out;
}

absl::Status Auditor::CheckAnswersSent(
    NodeLog& log,
    const std::map<std::string, std::vector<std::pair<uint64_t, const common::SharingPolicy*>>>&
        answers,
    std::vector<Finding>* findings) {
  for (const auto& [party, entries] : answers) {
    // The answers the node kept, by the index of their QUERY_ANSWERED entry.
    std::map<uint64_t, v1::Evidence> kept;
    v1::GetEvidenceRequest req;
    req.set_purpose(kAuditPurpose);
    req.set_peer(party);
    req.set_direction(v1::GetEvidenceRequest::DIRECTION_ANSWERS_SENT);
    absl::Status fetched =
        ForEachEvidence(log, req, [&](const v1::Evidence& ev) { kept[ev.log_index()] = ev; });
    // A node before Caseway kept answers does not know the direction: it kept nothing.
    if (!absl::IsInvalidArgument(fetched)) RETURN_IF_ERROR(fetched);
    uint64_t unproven = 0, beyond = 0;
    std::optional<std::pair<uint64_t, std::string>> first_unproven, first_beyond;  // index, why
    for (const auto& [index, policy] : entries) {
      const v1::LogEntry& e = log.parsed[index];
      auto it = kept.find(index);
      // An answer its entry says held no notice is not kept: there is nothing to check, unless
      // the node kept it anyway.
      if (e.first_seq() == 0 && it == kept.end()) continue;
      std::string why;
      v1::QueryAnswer answer;
      if (it != kept.end() && !it->second.purged_digest().empty()) {
        continue;  // retention removed it; its digest is all there is to check
      } else if (e.sharing_policy_digest().empty()) {
        why = "its log entry names no sharing policy, though the party is one the policy governs";
      } else if (it == kept.end()) {
        why = "the node shows no copy of it";
      } else if (common::Sha256(it->second.signed_().message()) != e.digest()) {
        why = "the copy the node shows is not the answer its log records";
      } else if (!directory_.Verify(log.jurisdiction, common::TimeOf(e.time()),
                                    common::kQueryAnswerContext, it->second.signed_().message(),
                                    it->second.signed_().signature())
                      .ok() ||
                 !answer.ParseFromString(it->second.signed_().message())) {
        why = "the copy the node shows does not verify against its key";
      }
      if (!why.empty()) {
        ++unproven;
        if (!first_unproven) first_unproven.emplace(index, why);
        continue;
      }
      if (policy == nullptr) continue;  // the policy itself is unproven (reported)
      for (const v1::QueryNotice& q : answer.notices()) {
        v1::Notice sent;
        std::vector<std::string> fields = {"(bytes that do not parse)"};
        if (sent.ParseFromString(q.notice())) fields = policy->Beyond(party, sent);
        if (fields.empty()) continue;
        ++beyond;
        if (!first_beyond) {
          first_beyond.emplace(index, absl::StrCat("notice ", sent.notice_id(), " under version ",
                                                   policy->version(), ": ",
                                                   absl::StrJoin(fields, ", ")));
        }
      }
    }
    auto report = [&](const char* status, const std::string& detail, uint64_t index) -> absl::Status {
      Finding f{status, detail, NewBundle(status, detail, {&log})};
      f.bundle.set_origin(log.jurisdiction);
      RETURN_IF_ERROR(AddEntry(log, index, f.bundle));
      findings->push_back(std::move(f));
      return absl::OkStatus();
    };
    if (first_beyond) {
      RETURN_IF_ERROR(report(
          "BEYOND_POLICY",
          absl::StrCat(log.jurisdiction, ": ", beyond, " notice(s) in its answers to ", party,
                       " hold what its sharing policy does not grant it; the first (answer of "
                       "entry ", first_beyond->first, "): ", first_beyond->second),
          first_beyond->first));
    }
    if (first_unproven) {
      RETURN_IF_ERROR(report(
          "POLICY_UNPROVEN",
          absl::StrCat(log.jurisdiction, ": ", unproven, " answer(s) it gave ", party,
                       " under its sharing policy cannot be checked; the first (entry ",
                       first_unproven->first, "): ", first_unproven->second),
          first_unproven->first));
    }
  }
  return absl::OkStatus();
}

absl::Status Auditor::CheckNotices(NodeLog& log, std::vector<Finding>* findings) {
  // Expected digest per (direction, peer, seq): outbound from the proven PUBLISHED entries,
  // inbound from the manifests the proven RECEIVED entries name.
  struct Expect {
    std::string digest;
    uint64_t index = 0;            // the log entry that gives it
    std::string manifest_digest;   // inbound: the signed manifest (in inbound_manifests)
    const common::SharingPolicy* policy = nullptr;  // outbound: the sharing policy in force
  };
  // The sharing policies the node applied, as it signed them, by digest; the one in force follows
  // the log's SHARING_POLICY entries. Whatever a PUBLISHED entry claims, what left the node is
  // checked against the policy in force then.
  ASSIGN_OR_RETURN(auto policies, SharingPolicies(log, findings));
  const common::SharingPolicy* in_force = nullptr;
  std::map<std::pair<bool, std::string>, std::map<uint64_t, Expect>> expected;
  std::map<std::string, std::map<std::string, v1::Signed>> inbound_manifests;  // peer -> digest
  std::set<std::string> fetched;  // peers whose inbound evidence is in inbound_manifests
  // Answers given under the sharing policy, by party: (log index, policy in force then).
  std::map<std::string, std::vector<std::pair<uint64_t, const common::SharingPolicy*>>> answers;
  for (uint64_t i = 0; i < log.parsed.size(); ++i) {
    const v1::LogEntry& e = log.parsed[i];
    // Whatever the entry claims: an answer to a department, or to a peer the policy in force
    // names, is checked against that policy.
    if (e.kind() == v1::LogEntry::KIND_QUERY_ANSWERED &&
        (!e.sharing_policy_digest().empty() || common::SharingPolicy::IsDepartment(e.peer()) ||
         (in_force != nullptr && in_force->Names(e.peer())))) {
      answers[e.peer()].emplace_back(i, in_force);
    } else if (e.kind() == v1::LogEntry::KIND_SHARING_POLICY) {
      auto p = policies.find(e.digest());
      in_force = p == policies.end() ? nullptr : &p->second;
    } else if (e.kind() == v1::LogEntry::KIND_PUBLISHED &&
               e.sequences_size() == e.destinations_size()) {
      for (int d = 0; d < e.destinations_size(); ++d) {
        expected[{true, e.destinations(d)}][e.sequences(d)] = {common::DestinationDigest(e, d), i,
                                                               "", in_force};
      }
    } else if (e.kind() == v1::LogEntry::KIND_RECEIVED && SaneRange(e.first_seq(), e.last_seq())) {
      auto& by_digest = inbound_manifests[e.peer()];
      if (fetched.insert(e.peer()).second) {
        v1::GetEvidenceRequest req;
        req.set_purpose(kAuditPurpose);
        req.set_peer(e.peer());
        req.set_direction(v1::GetEvidenceRequest::DIRECTION_INBOUND);
        RETURN_IF_ERROR(ForEachEvidence(log, req, [&](const v1::Evidence& ev) {
          if (ev.kind() == v1::Evidence::KIND_MANIFEST_RECEIVED) {
            by_digest[common::Sha256(ev.signed_().message())] = ev.signed_();
          }
        }));
      }
      auto it = by_digest.find(e.digest());
      if (it == by_digest.end()) continue;  // reconcile judges a missing manifest
      auto m = OpenManifest(it->second, directory_, e.peer(), log.jurisdiction);
      if (!m) continue;
      for (uint64_t seq = m->first_seq(); seq <= m->last_seq(); ++seq) {
        expected[{false, e.peer()}][seq] = {SeqDigest(*m, seq), i, it->first};
      }
    }
  }
  RETURN_IF_ERROR(CheckAnswersSent(log, answers, findings));
  for (const auto& [channel, want] : expected) {
    const auto& [outbound, peer] = channel;
    uint64_t mismatches = 0, beyond = 0;
    std::optional<std::pair<uint64_t, std::string>> first;  // seq, bytes served
    std::optional<std::pair<uint64_t, std::string>> first_beyond;  // seq, fields
    for (uint64_t from = want.begin()->first; from <= want.rbegin()->first;) {
      v1::GetNoticesRequest req;
      req.set_purpose(kAuditPurpose);
      req.set_peer(peer);
      req.set_direction(outbound ? v1::GetEvidenceRequest::DIRECTION_OUTBOUND
                                 : v1::GetEvidenceRequest::DIRECTION_INBOUND);
      req.set_first_seq(from);
      v1::GetNoticesResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline());
      RETURN_IF_ERROR(FromGrpcStatus(log.stub->GetNotices(&ctx, req, &resp)));
      if (resp.notices_size() == 0) break;
      for (const auto& n : resp.notices()) {
        if (n.purged()) continue;  // retention removed it; its digest is all there is to check
        auto it = want.find(n.seq());
        if (it != want.end() && common::Sha256(n.notice()) != it->second.digest) {
          ++mismatches;
          if (!first) first.emplace(n.seq(), n.notice());
        }
        if (it != want.end() && it->second.policy != nullptr) {
          v1::Notice sent;
          std::vector<std::string> fields = {"(bytes that do not parse)"};
          if (sent.ParseFromString(n.notice())) fields = it->second.policy->Beyond(peer, sent);
          if (!fields.empty()) {
            ++beyond;
            if (!first_beyond) first_beyond.emplace(n.seq(), absl::StrJoin(fields, ", "));
          }
        }
      }
      from = resp.notices(resp.notices_size() - 1).seq() + 1;
    }
    if (first_beyond) {
      const Expect& ex = want.at(first_beyond->first);
      std::string detail = absl::StrCat(
          log.jurisdiction, ": ", beyond, " notice(s) sent to ", peer,
          " hold fields its sharing policy (version ", ex.policy->version(),
          ") does not grant it; the first is seq ", first_beyond->first, ": ",
          first_beyond->second);
      Finding f{"BEYOND_POLICY", detail, NewBundle("BEYOND_POLICY", detail, {&log})};
      f.bundle.set_origin(log.jurisdiction);
      f.bundle.set_destination(peer);
      f.bundle.set_seq(first_beyond->first);
      RETURN_IF_ERROR(AddEntry(log, ex.index, f.bundle));
      findings->push_back(std::move(f));
    }
    if (!first) continue;
    const Expect& ex = want.at(first->first);
    std::string detail = absl::StrCat(
        log.jurisdiction, ": ", mismatches, " notice(s) of channel ",
        outbound ? log.jurisdiction : peer, " -> ", outbound ? peer : log.jurisdiction,
        " are served with other bytes than the digest ", outbound ? "its log entry" : "the signed manifest",
        " gives; the first is seq ", first->first);
    Finding f{"NOTICE_BYTES", detail, NewBundle("NOTICE_BYTES", detail, {&log})};
    f.bundle.set_origin(outbound ? log.jurisdiction : peer);
    f.bundle.set_destination(outbound ? peer : log.jurisdiction);
    f.bundle.set_seq(first->first);
    f.bundle.set_notice(first->second);
    RETURN_IF_ERROR(AddEntry(log, ex.index, f.bundle));
    if (!outbound) *f.bundle.add_manifests() = inbound_manifests[peer][ex.manifest_digest];
    findings->push_back(std::move(f));
  }
  return absl::OkStatus();
}

}  // namespace caseway::client::audit
