/* The C API, compiled as C11, against a loopback agent (see
 * testing/c_api_test_env.cc). Exits non-zero on the first failed check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "librpci/rpci.h"

int rpci_test_setup_env(void);
extern const unsigned long long rpci_test_reg_src, rpci_test_reg_dst, rpci_test_reg_len, rpci_test_reg_doorbell,
    rpci_test_reg_status;

static int failures = 0;
#define CHECK(cond)                                                                           \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              rpci_last_error());                                                             \
      ++failures;                                                                             \
    }                                                                                         \
  } while (0)

static void test_errors_have_names(void) {
  CHECK(strstr(rpci_strerror(RPCI_ENOSPC), "RPCI_ENOSPC") != NULL);
  CHECK(strstr(rpci_strerror(RPCI_ETIMEDOUT), "timed out") != NULL);
  CHECK(strstr(rpci_strerror(12345), "not an rpci error") != NULL);
  CHECK(strcmp(rpci_strerror(RPCI_OK), "RPCI_OK: success") == 0);
}

static void test_bad_arguments(void) {
  rpci_device* dev = (rpci_device*)1;
  CHECK(rpci_open_env(0, NULL) == RPCI_EINVAL);
  CHECK(rpci_open_env(9, &dev) == RPCI_ENOTFOUND);
  CHECK(dev == NULL);
  CHECK(strstr(rpci_last_error(), "RPCI_9_SESSION_ENDPOINT") != NULL);
  CHECK(rpci_open("127.0.0.1:1", "0123456789abcdef", "nothex", NULL, NULL, &dev) == RPCI_EINVAL);
  CHECK(rpci_open(NULL, NULL, NULL, NULL, NULL, &dev) == RPCI_EINVAL);
  CHECK(rpci_write32(NULL, 0, 0, 1) == RPCI_EINVAL);
  CHECK(rpci_flush(NULL) == RPCI_EINVAL);
  CHECK(rpci_close(NULL) == RPCI_OK);
}

static void test_copy_job(void) {
  int count = 0;
  CHECK(rpci_device_count(&count) == RPCI_OK);
  CHECK(count == 2);
  rpci_device* dev = NULL;
  CHECK(rpci_open_env(0, &dev) == RPCI_OK);
  if (dev == NULL) return;

  const volatile void* bar = NULL;
  uint64_t bar_size = 0;
  CHECK(rpci_bar_map(dev, 0, &bar, &bar_size) == RPCI_OK);
  CHECK(bar != NULL && bar_size == 4096);
  CHECK(rpci_bar_map(dev, 7, &bar, &bar_size) == RPCI_ENOTFOUND);

  rpci_dma_buf src, dst;
  CHECK(rpci_dma_alloc(dev, 4096, 4096, &src) == RPCI_OK);
  CHECK(rpci_dma_alloc(dev, 4096, 4096, &dst) == RPCI_OK);
  CHECK(src.device_addr % 4096 == 0 && dst.device_addr != src.device_addr);
  for (int i = 0; i < 4096; ++i) ((unsigned char*)src.host)[i] = (unsigned char)(i ^ 0xa5);
  CHECK(rpci_dma_flush(dev, &src, 0, 4096) == RPCI_OK);
  CHECK(rpci_dma_map_from_device(dev, &dst) == RPCI_OK);
  CHECK(rpci_write64(dev, 0, rpci_test_reg_src, src.device_addr) == RPCI_OK);
  CHECK(rpci_write64(dev, 0, rpci_test_reg_dst, dst.device_addr) == RPCI_OK);
  CHECK(rpci_write64(dev, 0, rpci_test_reg_len, 4096) == RPCI_OK);
  CHECK(rpci_doorbell(dev, 0, rpci_test_reg_doorbell, 9) == RPCI_OK);
  rpci_completion c;
  memset(&c, 0, sizeof(c));
  CHECK(rpci_wait_completion(dev, 5000, &c) == RPCI_OK);
  CHECK(c.data == 9 && c.vector == 1);
  CHECK(memcmp(src.host, dst.host, 4096) == 0);
  uint64_t status = 0;
  CHECK(rpci_read64(dev, 0, rpci_test_reg_status, &status) == RPCI_OK);
  CHECK(status == 9);
  uint32_t low = 0;
  CHECK(rpci_write32(dev, 0, 0x40, 0xfeedu) == RPCI_OK);
  CHECK(rpci_flush(dev) == RPCI_OK);
  CHECK(rpci_read32(dev, 0, 0x40, &low) == RPCI_OK);
  CHECK(low == 0xfeedu);

  CHECK(rpci_read32(dev, 0, 4096, &low) == RPCI_ERANGE);
  CHECK(rpci_write32(dev, 0, 2, 1) == RPCI_EINVAL);
  CHECK(rpci_wait_completion(dev, 50, &c) == RPCI_ETIMEDOUT);
  CHECK(rpci_refresh(dev, 5000) == RPCI_OK);

  CHECK(rpci_dma_free(dev, &src) == RPCI_OK);
  CHECK(rpci_dma_free(dev, &src) == RPCI_ENOTFOUND);
  CHECK(rpci_dma_flush(dev, &src, 0, 16) == RPCI_ENOTFOUND);
  CHECK(rpci_dma_sync(dev, &dst, 4000, 200) == RPCI_ERANGE);
  CHECK(rpci_close(dev) == RPCI_OK);
}

static void test_dma_exhaustion(void) {
  rpci_device* dev = NULL;
  CHECK(rpci_open_env(1, &dev) == RPCI_OK); /* 64 KiB DMA space */
  if (dev == NULL) return;
  rpci_dma_buf a, b;
  CHECK(rpci_dma_alloc(dev, 65536, 64, &a) == RPCI_OK);
  CHECK(rpci_dma_alloc(dev, 1, 1, &b) == RPCI_ENOSPC);
  CHECK(strstr(rpci_last_error(), "RESOURCE_EXHAUSTED") != NULL);
  CHECK(rpci_dma_alloc(dev, 16, 3, &b) == RPCI_EINVAL);
  CHECK(rpci_dma_free(dev, &a) == RPCI_OK);
  CHECK(rpci_dma_alloc(dev, 1, 1, &b) == RPCI_OK);
  CHECK(rpci_close(dev) == RPCI_OK);
}

int main(void) {
  if (rpci_test_setup_env() != 0) {
    fprintf(stderr, "could not start the loopback agent\n");
    return 2;
  }
  test_errors_have_names();
  test_bad_arguments();
  test_copy_job();
  test_dma_exhaustion();
  if (failures == 0) printf("c_api_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
