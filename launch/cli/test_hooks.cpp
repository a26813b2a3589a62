// The test hooks, from the environment (the one place that reads them).
#include "launch/cli/commands.h"

#include <cstdlib>

namespace rn::launch {

TestHooks test_hooks_from_environment() {
  TestHooks h;
  if (const char* pause = std::getenv("RESNET_TEST_CHECKPOINT_PAUSE_MS"))
    h.checkpoint_pause_ms = std::atoi(pause);
  h.checkpoint_broadcast = std::getenv("RESNET_TEST_CHECKPOINT_BROADCAST") != nullptr;
  return h;
}

}  // namespace rn::launch
