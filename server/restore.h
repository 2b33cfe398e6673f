// Restore: before a node restored from a backup exchanges anything, its peers say what they hold
// of it, so that nothing they saw is numbered or logged a second time (docs/operator.md,
// "Backup and restore").
#ifndef CASEWAY_SERVER_RESTORE_H_
#define CASEWAY_SERVER_RESTORE_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/status/status.h"
#include "caseway/v1/config.pb.h"
#include "server/store/notice_store.h"

namespace caseway::server {

// ConfirmRestore runs when the store is a restored backup whose peers have not confirmed it yet
// (NoticeStore::RestoredFrom). It asks every peer with an address (PeerExchange.GetPeerView,
// mutual TLS) how far it stored this node's channel and the largest checkpoint of this node's
// log it cosigned, and compares them with the copy:
//   - a peer holds more (a channel sequence beyond the copy's head, or a cosigned log larger than
//     the copy's): FAILED_PRECONDITION naming each, and nothing is changed. Continuing would
//     number those sequences again or fork the exchange log; only a newer backup helps.
//   - a peer cannot be reached: UNAVAILABLE naming it; the copy stays marked and the next start
//     asks again.
//   - every peer confirms: the mark records it, and the channels to serve_only peers (which have
//     no address to ask) stay held until each subscribes with a cursor within its head.
// What this node received after the backup comes back by itself: its cursors are the copy's, so
// its origins send those batches again.
absl::Status ConfirmRestore(const caseway::v1::NodeConfig& config,
                            std::shared_ptr<grpc::ChannelCredentials> creds, NoticeStore* store,
                            const NoticeStore::RestoreMark& mark);

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_RESTORE_H_
