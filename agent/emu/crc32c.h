#ifndef RPCI_AGENT_EMU_CRC32C_H_
#define RPCI_AGENT_EMU_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace rpci::agent {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial and final
// XOR 0xFFFFFFFF). Crc32c("123456789") == 0xE3069283.
uint32_t Crc32c(const uint8_t* data, size_t len);

}  // namespace rpci::agent

#endif  // RPCI_AGENT_EMU_CRC32C_H_
