#include "tests/testing/proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace caseway::testing {

LoopbackProxy::LoopbackProxy(int target_port) : target_port_(target_port) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  listen(listen_fd_, 64);
  thread_ = std::thread([this] { Run(); });
}

LoopbackProxy::~LoopbackProxy() {
  stop_ = true;
  thread_.join();
  absl::MutexLock lock(&mu_);
  CloseAll();
  close(listen_fd_);
}

std::string LoopbackProxy::address() const { return absl::StrCat("127.0.0.1:", port_); }

void LoopbackProxy::CloseAll() {
  for (auto [a, b] : pairs_) {
    close(a);
    close(b);
  }
  pairs_.clear();
}

// Only the relay thread closes sockets (a socket closed elsewhere could be reused while it still
// polls the number): Cut and SetDown ask it to.
void LoopbackProxy::Cut() {
  absl::MutexLock lock(&mu_);
  cut_ = true;
}

void LoopbackProxy::SetDown(bool down) {
  absl::MutexLock lock(&mu_);
  down_ = down;
  if (down) cut_ = true;
}

void LoopbackProxy::Stall(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  stalled_until_ = absl::Now() + d;
}

void LoopbackProxy::Run() {
  char buf[64 << 10];
  while (!stop_) {
    std::vector<pollfd> fds;
    std::vector<std::pair<int, int>> pairs;
    bool stalled;
    {
      absl::MutexLock lock(&mu_);
      if (cut_) {
        CloseAll();
        cut_ = false;
      }
      pairs = pairs_;
      stalled = absl::Now() < stalled_until_;
    }
    fds.push_back({listen_fd_, POLLIN, 0});
    if (!stalled) {
      for (auto [a, b] : pairs) {
        fds.push_back({a, POLLIN, 0});
        fds.push_back({b, POLLIN, 0});
      }
    }
    if (poll(fds.data(), fds.size(), 50) <= 0) continue;
    if (fds[0].revents & POLLIN) {
      int client = accept(listen_fd_, nullptr, nullptr);
      if (client >= 0) {
        absl::MutexLock lock(&mu_);
        if (down_) {
          close(client);
        } else {
          int target = socket(AF_INET, SOCK_STREAM, 0);
          sockaddr_in addr{};
          addr.sin_family = AF_INET;
          addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
          addr.sin_port = htons(target_port_);
          if (connect(target, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
            // A peer that stops reading for a second is a broken connection, not a stuck relay.
            timeval timeout{1, 0};
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
            setsockopt(target, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
            pairs_.emplace_back(client, target);
          } else {
            close(client);
            close(target);
          }
        }
      }
    }
    // Relay what is readable; a closed or failed side closes the pair.
    std::vector<std::pair<int, int>> dead;
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      const auto& pair = pairs[(i - 1) / 2];
      const int from = fds[i].fd;
      const int to = from == pair.first ? pair.second : pair.first;
      ssize_t n = read(from, buf, sizeof buf);
      bool ok = n > 0;
      for (ssize_t off = 0; ok && off < n;) {
        ssize_t w = send(to, buf + off, n - off, MSG_NOSIGNAL);
        if (w <= 0) ok = false;
        off += w;
      }
      if (!ok) dead.push_back(pair);
    }
    if (!dead.empty()) {
      absl::MutexLock lock(&mu_);
      for (auto d : dead) {
        for (size_t j = 0; j < pairs_.size(); ++j) {
          if (pairs_[j] == d) {
            close(d.first);
            close(d.second);
            pairs_.erase(pairs_.begin() + j);
            break;
          }
        }
      }
    }
  }
}

}  // namespace caseway::testing
