#include "client/cli/department_commands.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "caseway/v1/gateway.pb.h"
#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/config.h"
#include "common/digest.h"
#include "common/directory.h"
#include "common/grpc_status.h"
#include "common/identity.h"
#include "common/json.h"
#include "common/log_entry.h"
#include "common/proto_bytes.h"
#include "common/refusal.h"
#include "common/signing.h"
#include "common/tls.h"
#include "common/validation.h"

namespace caseway::cli {
namespace {

namespace v1 = caseway::v1;
using caseway::common::ProtoJson;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

int Fail(const char* command, const absl::Status& s) {
  fprintf(stderr, "caseway department %s: %s: %s\n", command,
          absl::StatusCodeToString(s.code()).c_str(), std::string(s.message()).c_str());
  return 1;
}

// Reader asks one node as one department, and verifies every answer it gets.
class Reader {
 public:
  static absl::StatusOr<Reader> Open(const DepartmentFlags& f) {
    if (f.purpose.empty()) {
      return absl::InvalidArgumentError(
          "--purpose: required: why this department reads the data (kept in the node's access log)");
    }
    std::vector<common::Violation> bad;
    common::ValidatePurpose("--purpose", f.purpose, &bad);
    if (!bad.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(bad[0].field, ": ", bad[0].description));
    }
    // The department's party is the one its certificate names: the node checks the same.
    auto pem = common::ReadFile(f.cert);
    if (!pem.ok()) return pem.status();
    auto uris = common::CertificateUris(*pem);
    if (!uris.ok()) return uris.status();
    std::string party;
    for (const std::string& uri : *uris) {
      auto id = common::ParseSpiffeId(uri);
      if (id.ok() && id->role == common::Role::kDepartment) party = id->Party();
    }
    if (party.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--cert: not a department certificate (spiffe://<federation>/department/<jurisdiction>/"
          "<name>; deploy/pki.sh department)"));
    }
    auto dir = common::Directory::Load(f.directory);
    if (!dir.ok()) return dir.status();
    if (absl::Status listed = dir->Listed(f.node); !listed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("node: ", f.node, " is not in the federation directory ", f.directory));
    }
    auto creds = common::ChannelCredentials({f.ca, f.cert, f.key});
    if (!creds.ok()) return creds.status();
    // An answer holds up to a quarter of the node's limits.max_message_bytes (at most 64 MiB) of
    // notices, and always one notice (up to half of it): more than gRPC's default of 4 MiB.
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(256 << 20);
    return Reader(f, std::move(party), std::move(*dir),
                  v1::PeerExchange::NewStub(grpc::CreateCustomChannel(f.address, *creds, args)));
  }

  // Ask sends `req` (asker, nonce and purpose filled in here) and returns the verified answer.
  absl::StatusOr<v1::QueryAnswer> Ask(v1::QueryRequest req) {
    req.set_asker(party_);
    req.set_purpose(flags_.purpose);
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof nonce) != 1) return absl::InternalError("no random bytes");
    req.set_nonce(reinterpret_cast<const char*>(nonce), sizeof nonce);
    *req.mutable_asked_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::QueryResponse resp;
    absl::Status s = common::FromGrpcStatus(stub_->Query(&ctx, req, &resp));
    if (!s.ok()) return s;
    // Nothing is printed that the node did not sign for this question.
    v1::QueryAnswer answer;
    const v1::Signed& signed_answer = resp.answer();
    if (!answer.ParseFromString(signed_answer.message())) {
      return absl::DataLossError("the answer does not parse");
    }
    if (absl::Status v = dir_.Verify(flags_.node, common::TimeOf(answer.answered_at()),
                                     common::kQueryAnswerContext, signed_answer.message(),
                                     signed_answer.signature());
        !v.ok()) {
      return absl::DataLossError(absl::StrCat("the answer's signature does not verify against ",
                                              flags_.node, "'s key: ", v.message()));
    }
    if (answer.answerer() != flags_.node || answer.asker() != party_) {
      return absl::DataLossError("the answer is not from the node to this department");
    }
    if (answer.request_digest() != common::Sha256(common::DeterministicBytes(req))) {
      return absl::DataLossError("the answer answers another question");
    }
    return answer;
  }

  // Print writes the answer's notices as caseway.v1.CaseEvent JSON lines.
  absl::Status Print(const v1::QueryAnswer& answer) const {
    for (const v1::QueryNotice& q : answer.notices()) {
      v1::CaseEvent e;
      e.set_holder(answer.answerer());
      e.set_role(q.role());
      if (!e.mutable_notice()->ParseFromString(q.notice())) {
        return absl::DataLossError("a notice in the answer does not parse");
      }
      e.set_digest(common::Sha256(q.notice()));
      *e.mutable_stored_at() = q.stored_at();
      printf("%s\n", ProtoJson(e).c_str());
    }
    if (fflush(stdout) != 0) return absl::InternalError("stdout: cannot be written");
    return absl::OkStatus();
  }

  const std::string& party() const { return party_; }

 private:
  Reader(const DepartmentFlags& f, std::string party, common::Directory dir,
         std::unique_ptr<v1::PeerExchange::Stub> stub)
      : flags_(f), party_(std::move(party)), dir_(std::move(dir)), stub_(std::move(stub)) {}

  const DepartmentFlags& flags_;
  std::string party_;
  common::Directory dir_;
  std::unique_ptr<v1::PeerExchange::Stub> stub_;
};

// Settings that are wrong (a flag, a file) exit 2, as bad flags do; the rest 1.
int FailOpen(const char* command, const absl::Status& s) {
  Fail(command, s);
  return absl::IsInvalidArgument(s) || absl::IsNotFound(s) || absl::IsFailedPrecondition(s) ? 2 : 1;
}

// Busy reports a refusal that asking again later answers: the node away or shutting down, the
// department's rate limit, or all of the node's query slots taken.
bool Busy(const absl::Status& s) {
  if (absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s)) return true;
  const std::string reason = common::ReasonOf(s);
  return absl::IsResourceExhausted(s) &&
         (reason == "QUERY_RATE_EXCEEDED" || reason == "QUERIES_BUSY" ||
          reason == "TOO_MANY_CALLS");
}

int RunQuery(const DepartmentFlags& f) {
  if (f.case_id.empty() == f.subject.empty()) {
    fprintf(stderr, "caseway department query: give exactly one of --case and --subject\n");
    return 2;
  }
  auto reader = Reader::Open(f);
  if (!reader.ok()) return FailOpen("query", reader.status());
  v1::QueryRequest req;
  if (!f.case_id.empty()) req.set_case_id(f.case_id);
  if (!f.subject.empty()) req.set_id_number(f.subject);
  auto answer = reader->Ask(req);
  if (!answer.ok()) return Fail("query", answer.status());
  if (absl::Status s = reader->Print(*answer); !s.ok()) return Fail("query", s);
  if (answer->truncated()) fprintf(stderr, "caseway department query: the answer is truncated\n");
  return 0;
}

// The position is written to a new file that then replaces the old one, so a crash leaves the
// old or the new position, never a torn one.
absl::Status SavePosition(const std::string& path, const v1::FeedPosition& at) {
  const std::string tmp = path + ".new";
  FILE* out = fopen(tmp.c_str(), "w");
  if (out == nullptr) return absl::InternalError(absl::StrCat(tmp, ": cannot be written"));
  const std::string json = ProtoJson(at, true) + "\n";
  const bool ok = fwrite(json.data(), 1, json.size(), out) == json.size() && fflush(out) == 0 &&
                  fsync(fileno(out)) == 0;
  if (fclose(out) != 0 || !ok) return absl::InternalError(absl::StrCat(tmp, ": cannot be written"));
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat(path, ": cannot be replaced"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::FeedPosition> LoadPosition(const std::string& path) {
  v1::FeedPosition at;
  if (access(path.c_str(), F_OK) != 0) return at;  // a new follower starts at the beginning
  auto text = common::ReadFile(path);
  if (!text.ok()) return text.status();
  if (!google::protobuf::util::JsonStringToMessage(*text, &at).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--state: ", path, " does not hold a caseway.v1.FeedPosition"));
  }
  return at;
}

int RunFollow(const DepartmentFlags& f) {
  absl::Duration interval;
  if (!absl::ParseDuration(f.interval, &interval) || interval < absl::Seconds(1)) {
    fprintf(stderr, "caseway department follow: --interval: a duration of at least 1s expected\n");
    return 2;
  }
  auto reader = Reader::Open(f);
  if (!reader.ok()) return FailOpen("follow", reader.status());
  auto at = LoadPosition(f.state);
  if (!at.ok()) return FailOpen("follow", at.status());
  // With --once, a node that stays busy or away is given up on after this many tries in a row.
  constexpr int kOnceTries = 30;
  int failures = 0;
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  absl::Duration wait = absl::ZeroDuration();
  while (!g_stop) {
    // Wait in short steps, so that a signal ends the follower at once.
    for (absl::Time until = absl::Now() + wait; !g_stop && absl::Now() < until;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (g_stop) break;
    v1::QueryRequest req;
    *req.mutable_after() = *at;
    auto answer = reader->Ask(req);
    if (!answer.ok()) {
      // A node that is away or busy is waited for; anything else is for a person to see.
      if (Busy(answer.status()) && !(f.once && ++failures >= kOnceTries)) {
        fprintf(stderr, "caseway department follow: %s (retrying in %s)\n",
                std::string(answer.status().message()).c_str(),
                absl::FormatDuration(interval).c_str());
        wait = interval;
        continue;
      }
      if (common::ReasonOf(answer.status()) == "FEED_RESTARTED") {
        fprintf(stderr, "caseway department follow: remove %s to follow again from the start\n",
                f.state.c_str());
      }
      return Fail("follow", answer.status());
    }
    failures = 0;
    // The position only moves on, in the node's store it started in (a restored store says so:
    // FEED_RESTARTED); an answer that says there is more must move it.
    const v1::FeedPosition& next = answer->next();
    if (!at->epoch().empty() && next.epoch() != at->epoch()) {
      return Fail("follow", absl::DataLossError("the node's answer changes the feed's epoch"));
    }
    if (next.epoch() == at->epoch() &&
        (next.published() < at->published() || next.received() < at->received())) {
      return Fail("follow", absl::DataLossError("the node's answer moves the feed position back"));
    }
    if (answer->truncated() && answer->notices_size() == 0 &&
        next.published() == at->published() && next.received() == at->received()) {
      return Fail("follow", absl::DataLossError(
                                "the node's answer says more is stored but moves the feed on by "
                                "nothing"));
    }
    // Printed first, then the position saved: a crash in between prints those notices again on
    // the next run (at least once; a notice is known by origin and notice_id).
    if (absl::Status s = reader->Print(*answer); !s.ok()) return Fail("follow", s);
    *at = answer->next();
    if (absl::Status s = SavePosition(f.state, *at); !s.ok()) return Fail("follow", s);
    if (answer->truncated()) {
      wait = absl::ZeroDuration();
    } else if (f.once) {
      return 0;
    } else {
      wait = interval;
    }
  }
  return 0;
}

void AddCommon(CLI::App* app, DepartmentFlags* f) {
  app->add_option("node", f->node, "the node's jurisdiction (region code): the signer of its answers")
      ->required();
  app->add_option("--address", f->address, "the node's address host:port")->required();
  app->add_option("--ca", f->ca, "federation CA certificate (PEM)")->required();
  app->add_option("--cert", f->cert,
                  "department certificate: spiffe://<federation>/department/<jurisdiction>/<name>")
      ->required();
  app->add_option("--key", f->key, "department private key (PEM)")->required();
  app->add_option("--directory", f->directory,
                  "federation directory with the node's signing key: every answer is verified")
      ->required();
  app->add_option("--purpose", f->purpose,
                  "why the department reads the data; kept in the node's access log")
      ->required();
}

}  // namespace

void AddDepartmentCommands(CLI::App& app, DepartmentFlags* f) {
  CLI::App* dept = app.add_subcommand(
      "department",
      "Read, as a department, what a node's sharing policy grants it (docs/privacy.md):\n"
      "only the granted kinds, with only the granted fields. Every read is in the node's\n"
      "access log and exchange log, and every answer is verified against the node's key.");
  dept->require_subcommand(1);
  f->query = dept->add_subcommand(
      "query", "Print the granted notices of one case or subject as caseway.v1.CaseEvent JSON lines.");
  f->query->add_option("--case", f->case_id, "the case id");
  f->query->add_option("--subject", f->subject,
                       "the subject's identity number (never logged; only digests are recorded)");
  AddCommon(f->query, f);
  f->follow = dept->add_subcommand(
      "follow",
      "Print every granted notice the node stores (published and received), as it is stored,\n"
      "as caseway.v1.CaseEvent JSON lines; the position is kept in --state between runs.\n"
      "Runs until stopped (SIGINT, SIGTERM), or with --once until caught up. Exit 0 when\n"
      "stopped or caught up, 1 on a refusal or an answer that does not verify.");
  f->follow->add_option("--state", f->state,
                        "file holding the feed position (caseway.v1.FeedPosition JSON); created "
                        "on the first run, which starts at the beginning")
      ->required();
  f->follow->add_option("--interval", f->interval, "wait between reads once caught up")
      ->capture_default_str();
  f->follow->add_flag("--once", f->once, "stop when caught up (for a scheduled job)");
  AddCommon(f->follow, f);
}

int RunDepartment(const DepartmentFlags& f) {
  if (f.query != nullptr && f.query->parsed()) return RunQuery(f);
  if (f.follow != nullptr && f.follow->parsed()) return RunFollow(f);
  return -1;
}

}  // namespace caseway::cli
