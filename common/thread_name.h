// Names for the node's own threads, so that `top -H`, `ps -T`, perf and /proc/PID/task/*/comm
// tell an operator (and bench/run.sh) which thread spends the CPU: the writer, the exchange's
// dispatcher, a subscriber. gRPC names its own threads.
#ifndef CASEWAY_COMMON_THREAD_NAME_H_
#define CASEWAY_COMMON_THREAD_NAME_H_

#include <string>

namespace caseway::common {

// NameThisThread gives the calling thread `name`, cut to the kernel's 15 bytes. The names in
// use are listed in docs/operator.md ("Threads").
void NameThisThread(const std::string& name);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_THREAD_NAME_H_
