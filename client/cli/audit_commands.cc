// The `caseway audit` commands: a coordinator's verify, reconcile, evidence, verify-bundle and
// report (report_command.cc).
#include "client/cli/audit_commands.h"

#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/audit/auditor.h"
#include "client/audit/evidence.h"
#include "common/config.h"
#include "common/digest.h"
#include "common/json.h"
#include "common/directory.h"
#include "common/tls.h"

namespace caseway::cli {
namespace {

namespace v1 = caseway::v1;

using caseway::common::ProtoJson;

// ---- caseway audit -------------------------------------------------------------------------

void AddAuditFlags(CLI::App* app, AuditFlags* f, bool needs_connection) {
  app->add_option("--directory", f->directory,
                  "federation directory with every node's signing key (deploy/pki.sh directory)")
      ->required();
  if (!needs_connection) return;
  app->add_option("--ca", f->ca, "federation CA certificate (PEM)")->required();
  app->add_option("--cert", f->cert, "auditor certificate: spiffe://<federation>/auditor/<name>")
      ->required();
  app->add_option("--key", f->key, "auditor private key (PEM)")->required();
  app->add_option("--state-dir", f->state_dir,
                  "last verified checkpoint per node (default ~/.caseway/audit)");
  app->add_option("--bundle-dir", f->bundle_dir,
                  "where evidence bundles go (default ./audit-bundles/<time>)");
  app->add_flag("--progress", f->progress, "show fetched entry counts on stderr");
  app->add_option("--stale", f->stale,
                  "a checkpoint older than this while the node's log is larger is "
                  "STALE_CHECKPOINT")
      ->capture_default_str();
  app->add_flag("--skip-notice-bytes", f->skip_notice_bytes,
                "do not fetch the notice bytes to compare them with the logged digests");
}

}  // namespace

absl::StatusOr<std::unique_ptr<caseway::client::audit::Auditor>> MakeAuditor(const AuditFlags& f) {
  auto dir = caseway::common::Directory::Load(f.directory);
  if (!dir.ok()) return dir.status();
  auto creds = caseway::common::ChannelCredentials({f.ca, f.cert, f.key});
  if (!creds.ok()) return creds.status();
  caseway::client::audit::AuditOptions o;
  const char* home = getenv("HOME");
  o.state_dir =
      !f.state_dir.empty() ? f.state_dir : std::string(home ? home : ".") + "/.caseway/audit";
  o.bundle_dir = !f.bundle_dir.empty()
                     ? f.bundle_dir
                     : "audit-bundles/" +
                           absl::FormatTime("%Y%m%dT%H%M%S", absl::Now(), absl::LocalTimeZone());
  if (!absl::ParseDuration(f.grace, &o.grace)) {
    return absl::InvalidArgumentError("--grace: a duration like 10m or 30s expected");
  }
  if (!absl::ParseDuration(f.stale, &o.stale)) {
    return absl::InvalidArgumentError("--stale: a duration like 2m or 30s expected");
  }
  o.check_notices = !f.skip_notice_bytes;
  o.progress = f.progress;
  o.bundle_all = f.bundle_all;
  return std::make_unique<caseway::client::audit::Auditor>(o, std::move(*dir), std::move(*creds));
}

namespace {

std::string Short(absl::string_view hash) { return caseway::common::ToHex(hash).substr(0, 16); }

// ReportFindings prints findings and writes their bundles; returns how many there were.
int ReportFindings(caseway::client::audit::Auditor& auditor,
                   std::vector<caseway::client::audit::Finding>& findings) {
  for (size_t i = 0; i < findings.size(); ++i) {
    auto& f = findings[i];
    auto path = auditor.WriteBundle(
        f.bundle, absl::StrCat(absl::AsciiStrToLower(f.status), "-", f.bundle.origin(), "-", i));
    printf("  %s: %s\n    bundle: %s\n", f.status.c_str(), f.detail.c_str(),
           path.ok() ? path->c_str() : std::string(path.status().message()).c_str());
  }
  return static_cast<int>(findings.size());
}

int PrintVerified(const caseway::client::audit::NodeLog& log) {
  printf("node %s at %s\n", log.jurisdiction.c_str(), log.address.c_str());
  printf("  checkpoint: %llu entries, root %s..., signed by %s\n",
         static_cast<unsigned long long>(log.checkpoint.size), Short(log.checkpoint.root).c_str(),
         log.jurisdiction.c_str());
  printf("  cosigned by: %s\n",
         log.cosigners.empty() ? "(none yet)" : absl::StrJoin(log.cosigners, ", ").c_str());
  return 0;
}

int RunAuditVerify(const AuditFlags& flags, const std::string& node) {
  auto auditor = MakeAuditor(flags);
  if (!auditor.ok()) {
    fprintf(stderr, "caseway audit verify: %s\n", std::string(auditor.status().message()).c_str());
    return 2;
  }
  std::vector<caseway::client::audit::Finding> findings;
  auto log = (*auditor)->Verify(node, &findings);
  if (!log.ok()) {
    fprintf(stderr, "caseway audit verify: %s: %s\n", node.c_str(),
            log.status().ToString().c_str());
    return 2;
  }
  PrintVerified(*log);
  if (findings.empty()) {
    printf("  every entry rebuilds the signed root; consistent with the last audit\nOK\n");
    return 0;
  }
  ReportFindings(**auditor, findings);
  return 1;
}

int RunAuditReconcile(const AuditFlags& flags, const std::string& a, const std::string& b) {
  auto auditor = MakeAuditor(flags);
  if (!auditor.ok()) {
    fprintf(stderr, "caseway audit reconcile: %s\n",
            std::string(auditor.status().message()).c_str());
    return 2;
  }
  std::vector<caseway::client::audit::Finding> findings;
  auto log_a = (*auditor)->Verify(a, &findings);
  auto log_b = log_a.ok() ? (*auditor)->Verify(b, &findings) : log_a.status();
  if (!log_a.ok() || !log_b.ok()) {
    absl::Status s = !log_a.ok() ? log_a.status() : log_b.status();
    fprintf(stderr, "caseway audit reconcile: %s\n", s.ToString().c_str());
    return 2;
  }
  PrintVerified(*log_a);
  PrintVerified(*log_b);
  auto report = (*auditor)->Reconcile(*log_a, *log_b);
  if (!report.ok()) {
    fprintf(stderr, "caseway audit reconcile: %s\n", report.status().ToString().c_str());
    return 2;
  }
  for (auto& f : report->findings) findings.push_back(std::move(f));
  const std::string ab = log_a->jurisdiction + "->" + log_b->jurisdiction;
  const std::string ba = log_b->jurisdiction + "->" + log_a->jurisdiction;
  std::map<std::string, std::pair<int, int>> counts;
  for (const char* st : {"PROVEN", "MATCHED", "CONFLICT", "RECEIVER_OMITTED", "SENDER_OMITTED",
                         "UNSUPPORTED", "PENDING", "UNDELIVERED", "DUPLICATE"}) {
    counts[st] = {0, 0};
  }
  for (const auto& r : report->rows) {
    auto& c = counts[r.status];
    (r.origin == log_a->jurisdiction ? c.first : c.second)++;
  }
  printf("\n%-18s %16s %16s %8s\n", "STATUS", ab.c_str(), ba.c_str(), "TOTAL");
  for (const auto& [st, c] : counts) {
    printf("%-18s %16d %16d %8d\n", st.c_str(), c.first, c.second, c.first + c.second);
  }
  int problems = 0;
  std::vector<std::string> lines;
  for (auto& r : report->rows) {
    if (!caseway::client::audit::IsProblem(r.status) && !flags.bundle_all) continue;
    std::string path;
    if (r.bundle.status().size() > 0) {
      auto written = (*auditor)->WriteBundle(
          r.bundle, absl::StrCat(absl::AsciiStrToLower(r.status), "-", r.origin, "-", r.destination,
                                 "-", r.seq, r.notice_id.empty() ? "" : "-", r.notice_id));
      path = written.ok() ? *written : std::string(written.status().message());
    }
    if (caseway::client::audit::IsProblem(r.status)) ++problems;
    lines.push_back(absl::StrFormat(
        "  %-17s %s->%s seq %-6llu %-26s %s\n      bundle: %s", r.status, r.origin, r.destination,
        static_cast<unsigned long long>(r.seq), r.notice_id, r.detail, path));
  }
  if (!lines.empty()) {
    printf("\n%s:\n", flags.bundle_all ? "Exchanges" : "Findings");
    for (const auto& l : lines) printf("%s\n", l.c_str());
  }
  if (!findings.empty()) {
    printf("\nLog findings:\n");
    problems += ReportFindings(**auditor, findings);
  }
  printf("\n%s\n", problems == 0 ? "OK: every exchange matched (PENDING ones are within --grace)"
                                 : absl::StrCat(problems, " finding(s)").c_str());
  return problems == 0 ? 0 : 1;
}

// RunAuditEvidence fetches one notice's evidence from a node and checks it against the directory:
// each manifest signed by the channel's origin and holding the notice's digest at its sequence,
// each receipt signed by the destination and naming a manifest shown.
int RunAuditEvidence(const AuditFlags& flags, const std::string& node, const std::string& notice_id,
                     const std::string& origin, bool json) {
  auto dir = caseway::common::Directory::Load(flags.directory);
  auto creds = caseway::common::ChannelCredentials({flags.ca, flags.cert, flags.key});
  if (!dir.ok() || !creds.ok()) {
    fprintf(stderr, "caseway audit evidence: %s\n",
            std::string((!dir.ok() ? dir.status() : creds.status()).message()).c_str());
    return 2;
  }
  auto stub = caseway::v1::ExchangeLog::NewStub(grpc::CreateChannel(node, *creds));
  caseway::v1::GetNoticeEvidenceRequest req;
  req.set_notice_id(notice_id);
  req.set_origin(origin);
  req.set_purpose(caseway::client::audit::kAuditPurpose);
  caseway::v1::NoticeEvidence ev;
  grpc::ClientContext ctx;
  grpc::Status s = stub->GetNoticeEvidence(&ctx, req, &ev);
  if (!s.ok()) {
    fprintf(stderr, "caseway audit evidence: %s: %s\n",
            absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())).c_str(),
            s.error_message().c_str());
    return s.error_code() == grpc::StatusCode::NOT_FOUND ? 1 : 2;
  }
  if (json) printf("%s\n", ProtoJson(ev).c_str());
  const std::string digest = caseway::common::Sha256(ev.notice());
  if (ev.purged()) {
    printf("notice %s: body purged under the node's retention period; the manifests below "
           "still sign its digest\n",
           notice_id.c_str());
  } else {
    printf("notice %s: %zu bytes, sha256 %s\n", notice_id.c_str(), ev.notice().size(),
           caseway::common::ToHex(digest).c_str());
  }
  int bad = 0;
  for (const auto& ch : ev.channels()) {
    printf("  channel %s -> %s, seq %llu\n", ch.origin().c_str(), ch.destination().c_str(),
           static_cast<unsigned long long>(ch.seq()));
    std::set<std::string> manifests;
    bool has_manifest = false, has_receipt = false;
    // At the origin, a destination its sharing policy names was sent its own copy
    // (docs/privacy.md): the manifest signs that copy's digest. Fetched as the node serves it,
    // only when the notice's own digest is not the one signed (a read, in the access log).
    std::string sent_digest = digest;
    bool copy_fetched = false;
    auto fetch_copy = [&] {
      if (copy_fetched || !origin.empty() || ev.purged()) return;
      copy_fetched = true;
      caseway::v1::GetNoticesRequest nreq;
      nreq.set_peer(ch.destination());
      nreq.set_direction(caseway::v1::GetEvidenceRequest::DIRECTION_OUTBOUND);
      nreq.set_first_seq(ch.seq());
      nreq.set_limit(1);
      nreq.set_purpose(caseway::client::audit::kAuditPurpose);
      caseway::v1::GetNoticesResponse nresp;
      grpc::ClientContext nctx;
      if (stub->GetNotices(&nctx, nreq, &nresp).ok() && nresp.notices_size() == 1 &&
          nresp.notices(0).seq() == ch.seq() && !nresp.notices(0).purged()) {
        const std::string copy = caseway::common::Sha256(nresp.notices(0).notice());
        if (copy != digest) {
          sent_digest = copy;
          printf("    %s was sent its copy under the sharing policy: sha256 %s\n",
                 ch.destination().c_str(), caseway::common::ToHex(copy).c_str());
        }
      }
    };
    for (const auto& e : ch.evidence()) {
      const auto& sig = e.signed_();
      const bool is_manifest = e.kind() == caseway::v1::Evidence::KIND_MANIFEST_SENT ||
                               e.kind() == caseway::v1::Evidence::KIND_MANIFEST_RECEIVED;
      if (is_manifest) {
        auto opened =
            caseway::client::audit::OpenManifest(sig, *dir, ch.origin(), ch.destination());
        caseway::v1::BatchManifest m = opened ? *opened : caseway::v1::BatchManifest();
        if (!opened) m.ParseFromString(sig.message());  // for the report only
        // The manifest is judged on its own (signature, channel, range); the notice bytes are
        // judged against the digest it signed. Changed bytes are the bytes' fault, not the
        // manifest's.
        const bool valid = opened && caseway::client::audit::Covers(m, ch.seq());
        if (valid && caseway::client::audit::SeqDigest(m, ch.seq()) != sent_digest) fetch_copy();
        const bool bytes_match =
            valid && (ev.purged() || caseway::client::audit::SeqDigest(m, ch.seq()) == sent_digest);
        if (valid) manifests.insert(caseway::common::Sha256(sig.message()));
        has_manifest |= valid;
        bad += !bytes_match;
        std::string verdict;
        if (!valid) {
          verdict = "signature, channel or range does not match";
        } else if (bytes_match && ev.purged()) {
          verdict = absl::StrCat("signed by ", ch.origin(), ", holds this notice's digest ",
                                 Short(caseway::client::audit::SeqDigest(m, ch.seq())), "...");
        } else if (bytes_match) {
          verdict = absl::StrCat("signed by ", ch.origin(), ", holds this notice's digest");
        } else {
          verdict = absl::StrCat(
              "valid, signed by ", ch.origin(), "; but the notice bytes this node serves do not "
              "match its digest for seq ", ch.seq(), " (",
              Short(caseway::client::audit::SeqDigest(m, ch.seq())), "...): the stored bytes "
              "changed");
        }
        printf("    %s manifest %llu..%llu (log entry %llu): %s\n",
               valid && bytes_match ? "ok " : "BAD",
               static_cast<unsigned long long>(m.first_seq()),
               static_cast<unsigned long long>(m.last_seq()),
               static_cast<unsigned long long>(e.log_index()), verdict.c_str());
      }
    }
    for (const auto& e : ch.evidence()) {
      const auto& sig = e.signed_();
      if (e.kind() != caseway::v1::Evidence::KIND_RECEIPT_SENT &&
          e.kind() != caseway::v1::Evidence::KIND_RECEIPT_RECEIVED) {
        continue;
      }
      auto opened = caseway::client::audit::OpenReceipt(sig, *dir, ch.origin(), ch.destination());
      caseway::v1::Receipt r = opened ? *opened : caseway::v1::Receipt();
      if (!opened) r.ParseFromString(sig.message());  // for the report only
      bool ok = opened && manifests.count(r.manifest_digest());
      has_receipt |= ok;
      bad += !ok;
      printf("    %s receipt %llu..%llu: %s\n", ok ? "ok " : "BAD",
             static_cast<unsigned long long>(r.first_seq()),
             static_cast<unsigned long long>(r.last_seq()),
             ok ? absl::StrCat("signed by ", ch.destination(), " for a manifest above, its entry ",
                               r.log_index())
                      .c_str()
                : "signature, channel or manifest does not match");
    }
    if (!has_manifest)
      printf("    (no manifest yet: not sent)\n");
    else if (!has_receipt)
      printf("    (no receipt yet)\n");
  }
  printf("%s\n", bad == 0 ? "OK: every signature and digest verifies" : "FAILED");
  return bad == 0 ? 0 : 1;
}

int RunAuditVerifyBundle(const AuditFlags& flags, const std::string& file) {
  auto dir = caseway::common::Directory::Load(flags.directory);
  if (!dir.ok()) {
    fprintf(stderr, "caseway audit verify-bundle: %s\n",
            std::string(dir.status().message()).c_str());
    return 2;
  }
  auto text = caseway::common::ReadFile(file);
  if (!text.ok()) {
    fprintf(stderr, "caseway audit verify-bundle: %s\n",
            std::string(text.status().message()).c_str());
    return 2;
  }
  caseway::v1::EvidenceBundle bundle;
  if (!google::protobuf::util::JsonStringToMessage(*text, &bundle).ok()) {
    fprintf(stderr, "caseway audit verify-bundle: %s: not a caseway.v1.EvidenceBundle\n",
            file.c_str());
    return 2;
  }
  printf("bundle %s: %s\n  %s\n", file.c_str(), bundle.status().c_str(), bundle.detail().c_str());
  auto lines = caseway::client::audit::VerifyBundle(bundle, *dir);
  if (!lines.ok()) {
    printf("FAILED: %s\n", std::string(lines.status().message()).c_str());
    return 1;
  }
  for (const auto& l : *lines) printf("  %s\n", l.c_str());
  printf("OK: the bundle supports its claim\n");
  return 0;
}

}  // namespace

void AddAuditCommands(CLI::App& app, AuditCommands* c) {
  CLI::App* audit = app.add_subcommand(
      "audit",
      "Coordinator tools: verify a node's exchange log, reconcile two nodes, check a "
      "bundle. Needs an auditor certificate and the federation directory.");
  audit->require_subcommand(1);
  c->verify = audit->add_subcommand(
      "verify",
      "Verify NODE's log: checkpoint signature, consistency with the last audit (saved "
      "in --state-dir), root rebuilt from every entry, entry format, notice bytes against the logged "
      "digests. Exit 1 on any finding (FORK, ROLLBACK, LOG_FORMAT, LOG_CORRUPT, TRUNCATED, "
      "STALE_CHECKPOINT, NOTICE_BYTES, HALTED), each with an evidence bundle.");
  c->verify->add_option("node", c->node_a, "node address host:port")->required();
  AddAuditFlags(c->verify, &c->flags, true);
  c->reconcile = audit->add_subcommand(
      "reconcile",
      "Verify two nodes, then classify every exchange between them in both "
      "directions; print counts and findings and write evidence bundles. Exit 1 on "
      "any finding.");
  c->reconcile->add_option("node_a", c->node_a, "first node host:port")->required();
  c->reconcile->add_option("node_b", c->node_b, "second node host:port")->required();
  c->reconcile
      ->add_option("--grace", c->flags.grace,
                   "exchanges younger than this are PENDING, not UNDELIVERED")
      ->capture_default_str();
  c->reconcile->add_flag("--bundle-all", c->flags.bundle_all,
                         "write a bundle for every exchange, not only findings");
  AddAuditFlags(c->reconcile, &c->flags, true);
  c->evidence = audit->add_subcommand(
      "evidence",
      "Show and check one notice's evidence at NODE: its bytes' digest, the signed "
      "manifests that hold it and the receipts for them.");
  c->evidence->add_option("node", c->node_a, "node address host:port")->required();
  c->evidence->add_option("notice_id", c->target, "the notice")->required();
  c->evidence->add_option("--origin", c->evidence_origin,
                          "for a received notice: the origin that sent it");
  c->evidence->add_flag("--json", c->evidence_json, "also print caseway.v1.NoticeEvidence as JSON");
  AddAuditFlags(c->evidence, &c->flags, true);
  c->bundle = audit->add_subcommand(
      "verify-bundle",
      "Check an evidence bundle offline: signatures, inclusion proofs and the "
      "facts its status claims. No node needed.");
  c->bundle->add_option("file", c->target, "bundle JSON file")->required();
  AddAuditFlags(c->bundle, &c->flags, false);
  c->report = audit->add_subcommand(
      "report",
      "The two-way assessment of one reporting period (docs/policy.md): verify every NODE's log,\n"
      "then compute per pair, direction, scope and priority the receipt rate, feedback rate,\n"
      "timely feedback rate and notification timeliness against the policy's targets, from times\n"
      "the other side signed or witnessed. Exit 1 when a log fails verification.");
  ReportFlags& r = c->report_flags;
  c->report->add_option("nodes", r.nodes, "node addresses host:port (every node of the pairs)")
      ->required();
  c->report->add_option("--period", r.period, "reporting period: 2026-10 (monthly) or 2026-Q4")
      ->required();
  c->report->add_option("--policy", r.policy,
                        "federation policy file (default: the built-in policy)");
  c->report->add_option("--format", r.format, "table, csv or json")
      ->check(CLI::IsMember({"table", "csv", "json"}))
      ->capture_default_str();
  c->report->add_flag("--details", r.details,
                      "list every item counted against a side (notice ids and evidence, no "
                      "personal data)");
  c->report->add_option("--html", r.html,
                        "also write the joint-meeting report to this file (self-contained HTML)");
  c->report->add_option("--lang", r.lang, "language of the HTML report: zh or en")
      ->check(CLI::IsMember({"zh", "en"}))
      ->capture_default_str();
  c->report->add_option("--level", r.level,
                        "aggregate the HTML report's pairs by county, prefecture or province")
      ->check(CLI::IsMember({"county", "prefecture", "province"}))
      ->capture_default_str();
  AddAuditFlags(c->report, &c->flags, true);
}

bool AuditCommands::parsed() const {
  return (verify && verify->parsed()) || (reconcile && reconcile->parsed()) ||
         (evidence && evidence->parsed()) || (bundle && bundle->parsed()) ||
         (report && report->parsed());
}

int RunAuditCommand(const AuditCommands& c) {
  if (c.verify->parsed()) return RunAuditVerify(c.flags, c.node_a);
  if (c.reconcile->parsed()) return RunAuditReconcile(c.flags, c.node_a, c.node_b);
  if (c.bundle->parsed()) return RunAuditVerifyBundle(c.flags, c.target);
  if (c.report->parsed()) return RunAuditReport(c.flags, c.report_flags);
  if (c.evidence->parsed()) {
    return RunAuditEvidence(c.flags, c.node_a, c.target, c.evidence_origin, c.evidence_json);
  }
  return 2;
}

}  // namespace caseway::cli
