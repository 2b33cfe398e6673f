#include "common/thread_name.h"

#include <pthread.h>

namespace caseway::common {

void NameThisThread(const std::string& name) {
  // Linux refuses names of 16 bytes or more (with the terminating NUL) rather than cutting them.
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace caseway::common
