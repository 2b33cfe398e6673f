#include "common/peer_channel.h"

#include <google/protobuf/util/time_util.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"

namespace caseway::common {

PeerChannel::PeerChannel(std::string address, std::shared_ptr<grpc::ChannelCredentials> creds,
                         grpc::ChannelArguments args, std::string cert_file,
                         absl::Duration settle)
    : address_(std::move(address)),
      creds_(std::move(creds)),
      args_(std::move(args)),
      cert_file_(std::move(cert_file)),
      settle_(settle) {
  // This channel's connections are its own, not shared through gRPC's global subchannel pool:
  // a new channel is then a new TLS handshake.
  args_.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  for (absl::string_view a : absl::StrSplit(address_, ',', absl::SkipWhitespace())) {
    addresses_.emplace_back(absl::StripAsciiWhitespace(a));
  }
  if (addresses_.empty()) addresses_.push_back(address_);
}

std::unique_ptr<PeerChannel> PeerChannel::ForPeer(const caseway::v1::NodeConfig& config,
                                                  const std::string& address,
                                                  std::shared_ptr<grpc::ChannelCredentials> creds,
                                                  grpc::ChannelArguments args) {
  const absl::Duration reload = absl::Milliseconds(
      google::protobuf::util::TimeUtil::DurationToMilliseconds(config.tls().reload_interval()));
  return std::make_unique<PeerChannel>(address, std::move(creds), std::move(args),
                                       config.tls().cert_file(), reload + absl::Seconds(1));
}

PeerChannel::FileStamp PeerChannel::Stamp() const {
  FileStamp f;
  struct stat st;
  if (!cert_file_.empty() && stat(cert_file_.c_str(), &st) == 0) {  // follows a symlink
    f.inode = st.st_ino;
    f.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    f.size = st.st_size;
  }
  return f;
}

std::shared_ptr<grpc::Channel> PeerChannel::Get(bool* renewed) {
  const FileStamp now = Stamp();
  absl::MutexLock lock(&mu_);
  bool changed = false;
  if (channel_ != nullptr && now != stamp_) {
    // Wait until the credentials have read the new file too (real time, not the node's clock).
    const absl::Time real_now = absl::Now();
    if (changed_at_ == absl::InfiniteFuture()) changed_at_ = real_now;
    changed = real_now - changed_at_ >= settle_;
  }
  if (next_) current_ = (current_ + 1) % addresses_.size();
  if (channel_ == nullptr || changed || refused_ || next_) {
    channel_ = grpc::CreateCustomChannel(addresses_[current_], creds_, args_);
    next_ = false;
    stamp_ = now;
    refused_ = false;
    changed_at_ = absl::InfiniteFuture();
  }
  if (renewed != nullptr) *renewed = changed;
  return channel_;
}

bool PeerChannel::Renewable() {
  const FileStamp now = Stamp();
  absl::MutexLock lock(&mu_);
  if (channel_ == nullptr || now == stamp_) return false;
  const absl::Time real_now = absl::Now();
  if (changed_at_ == absl::InfiniteFuture()) changed_at_ = real_now;
  return real_now - changed_at_ >= settle_;
}

void PeerChannel::Saw(grpc::StatusCode code) {
  absl::MutexLock lock(&mu_);
  if (code == grpc::StatusCode::UNAUTHENTICATED) refused_ = true;
  if (addresses_.size() > 1 &&
      (code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED)) {
    next_ = true;
  }
}

}  // namespace caseway::common
