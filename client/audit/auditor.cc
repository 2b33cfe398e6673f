#include "client/audit/auditor.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "common/grpc_status.h"
#include "common/identity.h"
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

// JurisdictionOfOrigin maps a checkpoint origin "<federation>/node/<j>" to j.
absl::StatusOr<std::string> JurisdictionOfOrigin(const common::Directory& dir,
                                                 const std::string& origin) {
  std::string prefix = absl::StrCat(dir.federation(), "/node/");
  if (origin.rfind(prefix, 0) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("checkpoint origin ", origin, " is not a node of ", dir.federation()));
  }
  return origin.substr(prefix.size());
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
  return status != "MATCHED" && status != "PROVEN" && status != "PENDING";
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
  *b.mutable_created_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(absl::Now()));
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

absl::StatusOr<NodeLog> Auditor::Verify(const std::string& address,
                                        std::vector<Finding>* findings) {
  NodeLog log;
  log.address = address;
  log.stub = v1::ExchangeLog::NewStub(grpc::CreateChannel(address, credentials_));
  v1::CheckpointResponse cp;
  std::shared_ptr<const grpc::AuthContext> peer;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    RETURN_IF_ERROR(FromGrpcStatus(log.stub->GetCheckpoint(&ctx, v1::GetCheckpointRequest(), &cp)));
    peer = ctx.auth_context();
  }
  log.note = cp.note();
  ASSIGN_OR_RETURN(common::Note note, common::ParseNote(log.note));
  ASSIGN_OR_RETURN(log.checkpoint, common::ParseCheckpointBody(note.body));
  ASSIGN_OR_RETURN(log.jurisdiction, JurisdictionOfOrigin(directory_, log.checkpoint.origin));
  // The address must be the node whose log it serves (its TLS certificate names it).
  auto id = peer ? common::IdentityFromAuthContext(*peer, directory_.federation())
                 : absl::StatusOr<common::Identity>(absl::UnauthenticatedError("no peer identity"));
  if (!id.ok() || id->role != common::Role::kNode || id->jurisdiction != log.jurisdiction) {
    return absl::PermissionDeniedError(absl::StrCat(
        address, " serves the log of ", log.jurisdiction, " but is not spiffe://",
        directory_.federation(), "/node/", log.jurisdiction));
  }
  ASSIGN_OR_RETURN(std::string key, directory_.Key(log.jurisdiction));
  if (absl::Status s = common::VerifyNote(note, log.checkpoint.origin, key); !s.ok()) {
    Finding f{"SIGNATURE", absl::StrCat(log.jurisdiction, ": checkpoint signature: ", s.message()),
              NewBundle("SIGNATURE", "", {&log})};
    findings->push_back(std::move(f));
    return log;
  }
  for (const auto& [j, k] : directory_.keys()) {
    if (j != log.jurisdiction && common::VerifyNote(note, directory_.NoteName(j), k).ok()) {
      log.cosigners.push_back(j);
    }
  }

  // Every entry, and the root rebuilt from them.
  for (uint64_t start = 0; start < log.checkpoint.size;) {
    v1::GetEntriesRequest req;
    req.set_start(start);
    req.set_end(std::min(log.checkpoint.size, start + kPage));
    v1::GetEntriesResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    RETURN_IF_ERROR(FromGrpcStatus(log.stub->GetEntries(&ctx, req, &resp)));
    if (resp.entries_size() == 0) return absl::DataLossError("node returned no entries");
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
  std::vector<uint64_t> corrupt;
  log.parsed.resize(log.entries.size());
  for (size_t i = 0; i < log.entries.size(); ++i) {
    if (!log.parsed[i].ParseFromString(log.entries[i]) || log.parsed[i].index() != i) {
      corrupt.push_back(i);
    }
  }
  log.corrupt = log.tree.Root(log.checkpoint.size) != log.checkpoint.root || !corrupt.empty();
  if (log.corrupt) {
    // Name the entries that do not prove into the signed root with the node's own proofs.
    std::map<uint64_t, std::vector<std::string>> proofs;
    for (uint64_t i = 0; i < log.entries.size(); ++i) {
      ASSIGN_OR_RETURN(auto proof, FetchInclusionProof(*log.stub, i, log.checkpoint.size));
      if (!common::VerifyInclusion(i, log.checkpoint.size, common::LeafHash(log.entries[i]), proof,
                                   log.checkpoint.root)
               .ok()) {
        if (std::find(corrupt.begin(), corrupt.end(), i) == corrupt.end()) corrupt.push_back(i);
        proofs[i] = std::move(proof);
      }
    }
    std::sort(corrupt.begin(), corrupt.end());
    std::string detail = absl::StrCat(log.jurisdiction, ": the entries do not rebuild the signed root",
                                      corrupt.empty() ? "" : "; entries that do not prove into it: ",
                                      absl::StrJoin(corrupt, ", "));
    Finding f{"LOG_CORRUPT", detail, NewBundle("LOG_CORRUPT", detail, {&log})};
    f.bundle.set_origin(log.jurisdiction);
    for (uint64_t i : corrupt) {
      f.bundle.add_corrupt_indices(i);
      if (f.bundle.entries_size() < 20) {
        auto* e = f.bundle.add_entries();
        e->set_jurisdiction(log.jurisdiction);
        e->set_index(i);
        e->set_entry(log.entries[i]);
        e->set_tree_size(log.checkpoint.size);
        for (const auto& h : proofs[i]) e->add_proof(h);
      }
    }
    findings->push_back(std::move(f));
  }

  // Consistency with what this auditor verified last time.
  const std::string state_path = absl::StrCat(options_.state_dir, "/", log.jurisdiction, ".checkpoint");
  bool consistent = !log.corrupt;
  if (auto saved = common::ReadFile(state_path); saved.ok()) {
    auto earlier_note = common::ParseNote(*saved);
    auto earlier = earlier_note.ok() ? common::ParseCheckpointBody(earlier_note->body)
                                     : absl::StatusOr<common::Checkpoint>(earlier_note.status());
    if (!earlier.ok()) return absl::DataLossError(absl::StrCat(state_path, ": ", earlier.status().message()));
    const uint64_t m = earlier->size, n = log.checkpoint.size;
    std::string reason, prefix_root;
    std::vector<std::string> proof;
    if (m > n) {
      reason = absl::StrCat("the log shrank from ", m, " to ", n, " entries");
    } else if (!log.corrupt) {
      // Provable offline: the root of our own first m entries, proven into the signed root of n.
      prefix_root = log.tree.Root(m);
      if (prefix_root != earlier->root) {
        ASSIGN_OR_RETURN(proof, common::ConsistencyProof(m, n, log.tree.Subtree()));
        reason = absl::StrCat("its first ", m, " entries have another root than it signed then");
      }
    } else {
      ASSIGN_OR_RETURN(proof, FetchConsistencyProof(*log.stub, m, n));
      absl::Status s = common::VerifyConsistency(m, n, proof, earlier->root, log.checkpoint.root);
      if (!s.ok()) reason = std::string(s.message());
    }
    if (!reason.empty()) {
      consistent = false;
      std::string detail = absl::StrCat(
          log.jurisdiction, ": checkpoint of size ", n, " does not extend the checkpoint of size ",
          m, " verified at the last audit (", reason, ")");
      Finding f{"FORK", detail, NewBundle("FORK", detail, {&log})};
      f.bundle.set_origin(log.jurisdiction);
      f.bundle.set_earlier_checkpoint(*saved);
      f.bundle.set_prefix_root(prefix_root);
      for (auto& h : proof) f.bundle.add_consistency_proof(h);
      findings->push_back(std::move(f));
    }
  }
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

}  // namespace caseway::client::audit
