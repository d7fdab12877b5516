/* astranet_stream_read_chunk: 4 MiB received as chunks without a copy, in order, none
 * over the size asked for; a chunk outlives its stream; the end of the stream is an
 * empty read with no chunk; frees are checked (double free, wrong kind, NULL). */
#include "common.h"

#define TOTAL (4u << 20)
#define MAX_CHUNK 100000u

static uint8_t pattern(size_t i) { return (uint8_t)(i % 251); }

static void *serve(void *arg) {
  astranet_listener *l = arg;
  astranet_stream *s;
  uint8_t *out = malloc(TOTAL);
  for (size_t i = 0; i < TOTAL; i++) out[i] = pattern(i);
  OK(astranet_accept_timeout(l, 10000, &s, &err));
  size_t w = 0;
  OK(astranet_stream_write_all(s, out, TOTAL, 30000, &w, &err));
  CHECK(w == TOTAL);
  OK(astranet_stream_close(s));
  free(out);
  return NULL;
}

int main(void) {
  watchdog(60);
  pair_t p = make_pair(NULL);
  served_t sv = dial_served(&p, ":9", serve);
  astranet_stream *s = sv.stream;

  astranet_chunk *chunk = NULL, *first = NULL;
  const uint8_t *data = NULL, *first_data = NULL;
  size_t len = 0, first_len = 0, got = 0, chunks = 0;
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_stream_read_chunk(s, MAX_CHUNK, &chunk, &data, NULL, &err));
  for (;;) {
    astranet_error *err = NULL;
    astranet_result r = astranet_stream_read_chunk(s, MAX_CHUNK, &chunk, &data, &len, &err);
    if (r == ASTRANET_AGAIN) {
      astranet_event ev[8];
      size_t n;
      OK(astranet_poll_wait(p.client, ev, 8, 1000, &n, &err));
      continue;
    }
    if (r != ASTRANET_OK) FAIL("read_chunk: %s", astranet_error_message(err));
    astranet_error_free(err);
    if (len == 0) {
      CHECK(chunk == NULL && data == NULL);
      break;
    }
    CHECK(chunk != NULL && data != NULL && len <= MAX_CHUNK);
    for (size_t i = 0; i < len; i++)
      if (data[i] != pattern(got + i)) FAIL("byte %zu differs", got + i);
    got += len;
    chunks++;
    if (first == NULL) {
      first = chunk, first_data = data, first_len = len; /* kept past the stream's close */
    } else {
      OK(astranet_chunk_free(chunk));
      EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_chunk_free(chunk));
    }
  }
  CHECK(got == TOTAL);
  /* The end stays the end. */
  OK(astranet_stream_read_chunk(s, MAX_CHUNK, &chunk, &data, &len, &err));
  CHECK(len == 0 && chunk == NULL);
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_stream_close((astranet_stream *)first));
  OK(astranet_stream_close(s));
  CHECK(pthread_join(sv.thread, NULL) == 0);
  OK(astranet_listener_close(sv.listener));
  free_pair(&p);
  for (size_t i = 0; i < first_len; i++)
    if (first_data[i] != pattern(i)) FAIL("kept chunk changed at %zu", i);
  OK(astranet_chunk_free(first));
  OK(astranet_chunk_free(NULL));
  printf("read_chunk: %u bytes in %zu chunks\n", TOTAL, chunks);
  return 0;
}
