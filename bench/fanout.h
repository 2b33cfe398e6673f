// Fan-out benchmark (bench/fanout.cc): identities for thousands of subscriber nodes, and a run
// that holds one mutual-TLS Subscribe stream per identity against one hub node.
#ifndef CASEWAY_BENCH_FANOUT_H_
#define CASEWAY_BENCH_FANOUT_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <memory>

#include "caseway/v1/gateway.grpc.pb.h"
#include "caseway/v1/notice.pb.h"
#include "common/tls.h"

namespace caseway::bench {

// Notice1K builds a valid verification request whose serialized size is about 1 KiB.
caseway::v1::Notice Notice1K(const std::string& id, const std::string& origin,
                             const std::string& dest);

// SizedNotice is a valid verification request of about `bytes` serialized (its items grow),
// up to LargestNoticeBytes(): the contract allows at most 64 items of 128 characters, so no
// valid notice is much larger than 25 KiB, whatever limits.max_notice_bytes allows.
caseway::v1::Notice SizedNotice(const std::string& id, const std::string& origin,
                                const std::string& dest, size_t bytes);
size_t LargestNoticeBytes();

// SpreadCase puts notice `i` into case bench-case-<i % cases>, whose subject has its own identity
// number (BenchIdNumber): queries and timelines then find `count / cases` notices per case.
// cases = 0 leaves the notice as it is.
void SpreadCase(caseway::v1::Notice& notice, uint64_t i, uint64_t cases);
std::string BenchCase(uint64_t k);
std::string BenchIdNumber(uint64_t k);

// BenchChannel is a channel of its own (benchmark clients must not share one) with 64 MiB
// message limits, presenting `files`. Exits with status 2 when they cannot be read.
std::shared_ptr<grpc::Channel> BenchChannel(const std::string& address,
                                            const caseway::common::TlsFiles& files);

// GatewayStub is a Gateway client on its own connection (benchmark clients must not share one),
// with 64 MiB message limits. Exits with status 2 when the certificate files cannot be read.
std::unique_ptr<caseway::v1::Gateway::Stub> GatewayStub(const std::string& address,
                                                        const caseway::common::TlsFiles& files);

struct FanoutPkiOptions {
  std::string ca_cert, ca_key, federation;
  std::string regions_csv;     // code,name,... with a header line (bench/data/regions/areas.csv)
  std::string hub;             // the hub's jurisdiction (excluded)
  std::string base_directory;  // federation directory to extend (lists the hub)
  std::string out_dir;
  int count = 3000;
};
int FanoutPki(const FanoutPkiOptions& options);

struct FanoutOptions {
  std::string hub_address, hub, ca;
  std::string publisher_cert, publisher_key;  // a client certificate of the hub's jurisdiction
  std::string pki_dir;                        // written by FanoutPki
  int hub_pid = 0;                            // for RSS
  int streams = 3000;
  uint64_t per_stream = 100;
  int clients = 4, batch = 500, max_s = 300;
  bool publish_first = false;  // publish everything before the streams connect (a backlog)
  std::string label = "run";
};
using MakeNotice = std::function<caseway::v1::Notice(const std::string& id, const std::string& dest)>;
using PrintRow =
    std::function<void(const std::string&, const std::vector<std::pair<std::string, std::string>>&)>;
int Fanout(const FanoutOptions& options, const MakeNotice& make_notice, const PrintRow& print);

}  // namespace caseway::bench

#endif  // CASEWAY_BENCH_FANOUT_H_
