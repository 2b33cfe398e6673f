#include "server/restore.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/log.h"
#include "common/peer_channel.h"
#include "common/signing.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;

absl::Status ConfirmRestore(const v1::NodeConfig& config,
                            std::shared_ptr<grpc::ChannelCredentials> creds, NoticeStore* store,
                            const NoticeStore::RestoreMark& mark) {
  const std::string taken = absl::FormatTime(absl::RFC3339_sec, mark.taken_at, absl::UTCTimeZone());
  const uint64_t log_size = store->log_enabled() ? store->LogHead().first : 0;
  Log(LogLevel::kInfo, "restore: this database is a backup; asking every peer what it holds of "
                       "this node before exchanging anything",
      {{"backup_taken_at", taken}, {"log_size", absl::StrCat(log_size)}});
  std::vector<std::string> lost, unreachable;
  std::set<std::string> unconfirmed;
  for (const auto& peer : config.peers()) {
    const std::string& j = peer.jurisdiction();
    if (peer.address().empty()) {
      unconfirmed.insert(j);  // serve_only without an address: confirmed when it subscribes
      continue;
    }
    auto channel = common::PeerChannel::ForPeer(config, peer.address(), creds);
    auto stub = v1::PeerExchange::NewStub(channel->Get());
    v1::PeerView view;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ctx.set_wait_for_ready(true);
    grpc::Status s = stub->GetPeerView(&ctx, v1::GetPeerViewRequest(), &view);
    if (!s.ok()) {
      unreachable.push_back(absl::StrCat(j, " (", peer.address(), "): ", s.error_message()));
      continue;
    }
    const uint64_t head = store->Channel(j).head;
    if (view.cursor() > head) {
      lost.push_back(absl::StrCat(j, " has stored this node's channel up to seq ", view.cursor(),
                                  ", but this copy ends at ", head, ": notices ", head + 1, "..",
                                  view.cursor(), " were published after the backup"));
    }
    if (view.witnessed_size() > log_size) {
      std::string when;
      if (auto note = common::ParseNote(view.witnessed_note()); note.ok()) {
        if (auto body = common::ParseCheckpointBody(note->body); body.ok() && body->time > 0) {
          when = absl::StrCat(" (signed ", absl::FormatTime(absl::RFC3339_sec,
                                                          absl::FromUnixSeconds(body->time),
                                                          absl::UTCTimeZone()),
                              ")");
        }
      }
      lost.push_back(absl::StrCat(j, " cosigned this node's exchange log at ",
                                  view.witnessed_size(), " entries", when, ", but this copy holds ",
                                  log_size, ": entries appended after the backup are not in it"));
    }
    Log(LogLevel::kInfo, "restore: peer answered",
        {{"peer", j}, {"its_cursor", absl::StrCat(view.cursor())}, {"our_head", absl::StrCat(head)},
         {"cosigned_size", absl::StrCat(view.witnessed_size())}});
  }
  if (!lost.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "storage.path: this database is a backup taken at ", taken,
        ", older than what peers hold of this node: ", absl::StrJoin(lost, "; "),
        ". Starting from it would number those sequences again or fork the exchange log. Restore "
        "a newer backup (or the original disk); nothing was changed (docs/operator.md, \"Backup "
        "and restore\")"));
  }
  if (!unreachable.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "storage.path: this database is a backup taken at ", taken,
        "; a restored node starts only once every peer has said what it holds of it, and these "
        "did not answer: ", absl::StrJoin(unreachable, "; "),
        ". Start again when they are reachable (systemd does, exit status 1)"));
  }
  if (absl::Status s = store->SetRestoreChecked(unconfirmed); !s.ok()) return s;
  Log(LogLevel::kInfo, "restore: every peer confirmed this copy holds all it saw",
      {{"backup_taken_at", taken},
       {"held_until_they_subscribe", absl::StrJoin(unconfirmed, ",")}});
  return absl::OkStatus();
}

}  // namespace caseway::server
