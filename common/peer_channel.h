// PeerChannel: a node's channel to one peer, remade when the node's certificate is renewed.
#ifndef CASEWAY_COMMON_PEER_CHANNEL_H_
#define CASEWAY_COMMON_PEER_CHANNEL_H_

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "caseway/v1/config.pb.h"

namespace caseway::common {

// PeerChannel hands out the channel to use for the next call. The credentials reload the
// certificate (tls.reload_interval), but a connection keeps the certificate of its handshake:
// so a new channel, with connections of its own, is made when the certificate file changed since
// the last one was made, or after the peer refused a call as UNAUTHENTICATED (e.g. the old
// certificate revoked). `address` may list several, comma-separated (the two nodes of a peer run
// as an active/standby pair): the channel is to one of them, and UNAVAILABLE or a call that timed
// out moves the next Get() to the next one. Concurrency: thread-safe.
class PeerChannel {
 public:
  // `settle`: how long after the certificate file changed the new channel is made, so that the
  // credentials (which read the file every tls.reload_interval) hold the new certificate by then.
  PeerChannel(std::string address, std::shared_ptr<grpc::ChannelCredentials> creds,
              grpc::ChannelArguments args, std::string cert_file, absl::Duration settle);

  // Get returns the channel for the next call; `renewed` (optional) is set when it is a new one
  // made because the certificate changed.
  std::shared_ptr<grpc::Channel> Get(bool* renewed = nullptr);
  // Renewable reports that the certificate changed and has settled: the next Get() makes a new
  // channel. A long-lived stream polls it to end itself and reconnect with the new certificate.
  bool Renewable();
  // Saw reports a call's outcome: UNAUTHENTICATED makes the next Get() use a new channel;
  // UNAVAILABLE and DEADLINE_EXCEEDED, one to the next address when there are several.
  void Saw(grpc::StatusCode code);

  // ForPeer makes a node's channel to `address` with its tls.cert_file watched, settling a second
  // after tls.reload_interval.
  static std::unique_ptr<PeerChannel> ForPeer(const caseway::v1::NodeConfig& config,
                                              const std::string& address,
                                              std::shared_ptr<grpc::ChannelCredentials> creds,
                                              grpc::ChannelArguments args = {});

  const std::string& address() const { return address_; }

 private:
  struct FileStamp {
    ino_t inode = 0;
    int64_t mtime_ns = 0;
    off_t size = 0;
    bool operator==(const FileStamp& o) const {
      return inode == o.inode && mtime_ns == o.mtime_ns && size == o.size;
    }
    bool operator!=(const FileStamp& o) const { return !(*this == o); }
  };
  FileStamp Stamp() const;

  const std::string address_;                 // as configured
  std::vector<std::string> addresses_;        // address_, split at commas
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;   // the address the channel is to
  bool next_ ABSL_GUARDED_BY(mu_) = false;    // move to the next address at the next Get()
  const std::shared_ptr<grpc::ChannelCredentials> creds_;
  grpc::ChannelArguments args_;
  const std::string cert_file_;
  const absl::Duration settle_;
  absl::Mutex mu_;
  absl::Time changed_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();  // first seen changed
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  FileStamp stamp_ ABSL_GUARDED_BY(mu_);
  bool refused_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_PEER_CHANNEL_H_
