#include "proxy/version.h"

namespace slotpilot::proxy {
std::string_view Version() { return SLOTPILOT_VERSION; }
}  // namespace slotpilot::proxy
