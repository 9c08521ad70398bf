/* The C ABI from C: compiled with the system cc against callbook.h and
 * libcallbook.so (tests/php/run builds and runs it). A temporary database:
 * import, register a call, book, errors with their codes and statuses, the
 * pure functions, NULL arguments, the free registry, and threads booking on
 * one handle; then the rest of the call against the fake Cal.com process
 * (env CALLBOOK_FAKE_CALCOM): call context, find, cancel, reschedule, the
 * change log, callbacks, signed Retell function calls through the agent,
 * Cal.com's webhook, pull and drift. Prints "N passed, N failed" and exits
 * non-zero on a failure. */
#define _GNU_SOURCE
#include "callbook.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (cond) {                                        \
            passed++;                                      \
        } else {                                           \
            failed++;                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                  \
            fputc('\n', stderr);                           \
        }                                                  \
    } while (0)

/* The integer after "key": in a JSON text, or -1. */
static long long json_int(const char *json, const char *key) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *at = json ? strstr(json, needle) : NULL;
    return at ? strtoll(at + strlen(needle), NULL, 10) : -1;
}

static int has(const char *json, const char *part) { return json && strstr(json, part) != NULL; }

/* Calls that answer JSON: checks the status and that the answer holds `part`, then frees it.
 * `out` is read after the call: C leaves the order of argument evaluation open. */
static void expect(int32_t status, char **answer, int32_t want, const char *part, const char *what) {
    char *out = *answer;
    CHECK(status == want, "%s: status %d, want %d (%s)", what, status, want, out ? out : "NULL");
    CHECK(has(out, part), "%s: %s lacks %s", what, out ? out : "NULL", part);
    CHECK(callbook_free(out) == 0, "%s: free", what);
}

static const char *DIRECTORY =
    "{\"companies\":[{\"id\":1,\"name\":\"Salon\",\"calcom_api_key\":\"cal_test\"}],"
    "\"branches\":[{\"id\":1,\"company_id\":1,\"name\":\"Mitte\",\"timezone\":\"Europe/Berlin\",\"country\":\"DE\","
    "\"phone_number\":\"+49301234567\"}],"
    "\"services\":[{\"id\":1,\"company_id\":1,\"name\":\"Cut\",\"calcom_event_type_id\":11,\"duration_minutes\":30},"
    "{\"id\":2,\"company_id\":1,\"name\":\"Chair\",\"calcom_event_type_id\":12,\"duration_minutes\":30,\"capacity\":1}],"
    "\"calls\":[{\"id\":1,\"retell_call_id\":\"call_anon\",\"company_id\":1,\"branch_id\":1,\"from_number\":\"anonymous\"},"
    "{\"id\":2,\"retell_call_id\":\"call_known\",\"company_id\":1,\"branch_id\":1,\"from_number\":\"+49 151 2345678\"}]}";

enum { THREADS = 4, PER_THREAD = 25 };

struct worker {
    CallbookHandle *h;
    int index;
    int ok;
};

static void *book_many(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char request[256];
        int n = w->index * PER_THREAD + i;
        snprintf(request, sizeof request,
                 "{\"retell_call_id\":\"call_known\",\"customer_name\":\"Max\",\"service_id\":1,"
                 "\"start\":\"2099-03-%02dT%02d:%02d:00Z\"}",
                 1 + n / 48, 8 + (n % 48) / 4, (n % 4) * 15);
        char *out = NULL;
        if (callbook_book(w->h, request, &out) == 0 && has(out, "\"status\":\"confirmed\"")) w->ok++;
        callbook_free(out);
    }
    return NULL;
}


/* SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104), to sign Retell and
 * Cal.com requests as they would arrive. Checked against the shared
 * signature vector below before use. */
static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

struct sha256 {
    uint32_t h[8];
    uint8_t block[64];
    size_t used;
    uint64_t bits;
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(struct sha256 *s) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)s->block[4 * i] << 24 | (uint32_t)s->block[4 * i + 1] << 16 |
               (uint32_t)s->block[4 * i + 2] << 8 | s->block[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d, s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha256_init(struct sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->used = 0;
    s->bits = 0;
}

static void sha256_add(struct sha256 *s, const void *data, size_t len) {
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        s->block[s->used++] = p[i];
        s->bits += 8;
        if (s->used == 64) sha256_block(s), s->used = 0;
    }
}

static void sha256_end(struct sha256 *s, uint8_t out[32]) {
    uint64_t bits = s->bits;
    uint8_t pad = 0x80, zero = 0;
    sha256_add(s, &pad, 1);
    while (s->used != 56) sha256_add(s, &zero, 1);
    for (int i = 7; i >= 0; i--) {
        uint8_t byte = (uint8_t)(bits >> (8 * i));
        sha256_add(s, &byte, 1);
    }
    for (int i = 0; i < 8; i++)
        out[4 * i] = s->h[i] >> 24, out[4 * i + 1] = s->h[i] >> 16, out[4 * i + 2] = s->h[i] >> 8, out[4 * i + 3] = s->h[i];
}

/* Hex HMAC-SHA256 of `a` followed by `b` (NULL: nothing) under a key of at most 64 bytes. */
static void hmac_hex(const char *key, const char *a, const char *b, char hex[65]) {
    uint8_t pad[64] = {0}, inner[32], mac[32];
    memcpy(pad, key, strlen(key));
    struct sha256 s;
    for (int i = 0; i < 64; i++) pad[i] ^= 0x36;
    sha256_init(&s);
    sha256_add(&s, pad, 64);
    sha256_add(&s, a, strlen(a));
    if (b) sha256_add(&s, b, strlen(b));
    sha256_end(&s, inner);
    for (int i = 0; i < 64; i++) pad[i] ^= 0x36 ^ 0x5c;
    sha256_init(&s);
    sha256_add(&s, pad, 64);
    sha256_add(&s, inner, 32);
    sha256_end(&s, mac);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
}

/* `x-retell-signature` for a body, signed now (or at `ms`). */
static void retell_sign(const char *body, const char *key, long long ms, char *header, size_t size) {
    if (ms == 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    }
    char stamp[32], hex[65];
    snprintf(stamp, sizeof stamp, "%lld", ms);
    hmac_hex(key, body, stamp, hex);
    snprintf(header, size, "v=%s,d=%s", stamp, hex);
}

/* core's fake Cal.com as a process: its URL is the first line it prints;
 * one command a line on its stdin, one answer line each. */
struct fake {
    pid_t pid;
    FILE *to, *from;
    char url[128];
};

static int fake_start(struct fake *f, const char *binary) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return -1;
    f->pid = fork();
    if (f->pid < 0) return -1;
    if (f->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execl(binary, binary, "123:30", (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(out[1]);
    f->to = fdopen(in[1], "w");
    f->from = fdopen(out[0], "r");
    if (!f->to || !f->from || !fgets(f->url, sizeof f->url, f->from)) return -1;
    f->url[strcspn(f->url, "\n")] = 0;
    return strncmp(f->url, "http://127.0.0.1:", 17) == 0 ? 0 : -1;
}

static const char *fake_send(struct fake *f, const char *command, char *answer, size_t size) {
    fprintf(f->to, "%s\n", command);
    fflush(f->to);
    if (!fgets(answer, (int)size, f->from)) answer[0] = 0;
    answer[strcspn(answer, "\n")] = 0;
    return answer;
}

static void fake_stop(struct fake *f) {
    fclose(f->to); /* it exits when its stdin closes */
    fclose(f->from);
    waitpid(f->pid, NULL, 0);
}

static const char *JOURNEY =
    "{\"companies\":[{\"id\":1,\"name\":\"Salon\",\"calcom_api_key\":\"cal_c\",\"calcom_api_base\":\"%s\","
    "\"calcom_webhook_secret\":\"whsec_c\"}],"
    "\"branches\":[{\"id\":1,\"company_id\":1,\"name\":\"Mitte\",\"timezone\":\"Europe/Berlin\",\"country\":\"DE\","
    "\"phone_number\":\"+49301234567\"}],"
    "\"services\":[{\"id\":1,\"company_id\":1,\"name\":\"Cut\",\"calcom_event_type_id\":123,\"duration_minutes\":30}],"
    "\"calls\":[{\"id\":1,\"retell_call_id\":\"call_max\",\"company_id\":1,\"branch_id\":1,\"from_number\":\"+49 151 2345678\"},"
    "{\"id\":2,\"retell_call_id\":\"call_max_again\",\"company_id\":1,\"branch_id\":1,\"from_number\":\"0151 2345678\"},"
    "{\"id\":3,\"retell_call_id\":\"call_anon\",\"company_id\":1,\"branch_id\":1,\"from_number\":\"anonymous\"}]}";

/* A Retell function call as Retell sends it. */
static void retell_body(char *body, size_t size, const char *name, const char *call_id, const char *from, const char *args) {
    snprintf(body, size,
             "{\"name\":\"%s\",\"call\":{\"call_id\":\"%s\",\"from_number\":\"%s\",\"to_number\":\"+49301234567\","
             "\"direction\":\"inbound\"},\"args\":%s}",
             name, call_id, from, args);
}

/* The rest of the call, on a second database, against the fake Cal.com. */
static void journey(const char *dir, CallbookHandle *keyless) {
    const char *binary = getenv("CALLBOOK_FAKE_CALCOM");
    CHECK(binary && *binary, "env CALLBOOK_FAKE_CALCOM names the fake Cal.com (tests/php/run sets it)");
    struct fake fake;
    if (!binary || !*binary || fake_start(&fake, binary) != 0) {
        CHECK(0, "the fake Cal.com starts");
        return;
    }
    char path[256], text[4096], request[1024], want[256], answer[65536], sig[128];
    snprintf(path, sizeof path, "%s/journey.db", dir);
    CallbookHandle *h = NULL;
    char *out = NULL, *error = NULL;
    CHECK(callbook_open(path, "{\"retell_api_key\":5}", &h, &error) == 2 && has(error, "\"code\":\"invalid_json\""),
          "a Retell key that is not a string: %s", error ? error : "NULL");
    callbook_free(error);
    CHECK(callbook_open(path, "{\"synchronous\":\"normal\",\"horizon_days\":40000,\"retell_api_key\":\"key_c\"}", &h,
                        &error) == 0 && h != NULL, "open with a Retell key");
    snprintf(text, sizeof text, JOURNEY, fake.url);
    expect(callbook_import(h, text, &out), &out, 0, "\"calls\":3", "journey directory");
    char sync[256];
    snprintf(sync, sizeof sync, "{\"calcom_url\":\"%s\",\"backoff_ms\":[0]}", fake.url);

    /* Booked by a known caller and synced: the fake holds it. */
    CHECK(callbook_book(h, "{\"retell_call_id\":\"call_max\",\"customer_name\":\"Max\",\"service_id\":1,"
                           "\"start\":\"2099-01-08T13:00:00Z\"}", &out) == 0, "book: %s", out);
    long long id = json_int(out, "appointment_id");
    callbook_free(out);
    expect(callbook_run_sync_once(h, sync, &out), &out, 0, "\"synced\":1", "the create reaches the fake");
    CHECK(has(fake_send(&fake, "stats", answer, sizeof answer), "\"live_bookings\":1"), "one live booking: %s", answer);

    /* What the agent is told; finding one's own appointments, by another call from the same number. */
    expect(callbook_call_context(h, "call_max_again", &out), &out, 0, "\"known_caller\":true", "context, known caller");
    expect(callbook_call_context(h, "call_anon", &out), &out, 0, "\"known_caller\":false", "context, withheld number");
    expect(callbook_call_context(h, "call_nope", &out), &out, 3, "\"code\":\"call_not_found\"", "context, unknown call");
    expect(callbook_call_context(h, NULL, &out), &out, 2, "\"code\":\"null_argument\"", "context, NULL call");
    snprintf(want, sizeof want, ",\"id\":%lld,", id); /* keys come sorted: after customer_id */
    expect(callbook_find_appointments(h, "call_max_again", "2099-01-08", &out), &out, 0, want, "find on the day");
    expect(callbook_find_appointments(h, "call_max_again", NULL, &out), &out, 0, want, "find upcoming");
    expect(callbook_find_appointments(h, "call_max_again", "2099-01-09", &out), &out, 0, "{\"appointments\":[]}",
           "find on another day");
    expect(callbook_find_appointments(h, "call_anon", NULL, &out), &out, 3, "\"code\":\"caller_not_verified\"",
           "a withheld number finds nothing");
    expect(callbook_find_appointments(h, "call_max", "morgen-ish", &out), &out, 2, "\"code\":\"", "a date that is none");
    expect(callbook_appointments_by_phone(h, 1, "0151 2345678", &out), &out, 0, want, "an operator's search");
    expect(callbook_appointments_by_phone(h, 1, NULL, &out), &out, 2, "null_argument", "search, NULL phone");

    /* Reschedule: the question, then the move; the sync moves the fake's booking (a new uid). */
    snprintf(request, sizeof request, "{\"retell_call_id\":\"call_max_again\",\"appointment_id\":%lld,"
             "\"new_date\":\"2099-01-09\",\"new_time\":\"11:00\"}", id);
    expect(callbook_reschedule_appointment(h, request, &out), &out, 0, "\"needs_confirmation\":true", "asked first");
    expect(callbook_find_appointments(h, "call_max", "2099-01-08", &out), &out, 0, want, "nothing moved yet");
    snprintf(request, sizeof request, "{\"retell_call_id\":\"call_max_again\",\"appointment_id\":%lld,"
             "\"new_date\":\"2099-01-09\",\"new_time\":\"11:00\",\"reason\":\"dentist\",\"confirmed\":true}", id);
    CHECK(callbook_reschedule_appointment(h, request, &out) == 0 && has(out, "\"kind\":\"reschedule\"") &&
              has(out, "\"starts_at\":\"2099-01-09T10:00:00Z\"") &&
              has(out, "\"previous_starts_at\":\"2099-01-08T13:00:00Z\""), "moved: %s", out);
    callbook_free(out);
    expect(callbook_run_sync_once(h, sync, &out), &out, 0, "\"synced\":1", "the move reaches the fake");
    CHECK(has(fake_send(&fake, "stats", answer, sizeof answer), "\"live_bookings\":1") && has(answer, "\"bookings\":2"),
          "moved in the fake as Cal.com does (new booking, old one cancelled): %s", answer);
    CHECK(has(fake_send(&fake, "bookings", answer, sizeof answer), "\"start\":\"2099-01-09T10:00:00.000Z\""),
          "the fake's booking starts at the new time: %.300s", answer);
    CHECK(callbook_appointment_changes(h, id, &out) == 0 && has(out, "{\"changes\":[{") &&
              has(out, "\"kind\":\"reschedule\"") && has(out, "\"to_starts_at\":\"2099-01-09T10:00:00Z\"") &&
              has(out, "\"by\":\"call\"") && has(out, "\"reason\":\"dentist\""), "the change log: %s", out);
    callbook_free(out);
    expect(callbook_appointment_changes(h, 999, &out), &out, 3, "\"code\":\"appointment_not_found\"", "log of none");
    expect(callbook_reschedule_appointment(h, "{\"retell_call_id\":", &out), &out, 2, "\"code\":\"invalid_json\"",
           "malformed move");
    snprintf(request, sizeof request, "{\"retell_call_id\":\"call_max\",\"appointment_id\":%lld,"
             "\"new_start\":\"2001-01-01T10:00:00Z\",\"confirmed\":true}", id);
    expect(callbook_reschedule_appointment(h, request, &out), &out, 3, "\"code\":\"start_in_past\"", "moved to the past");

    /* Cancel: a stranger is refused; the caller cancels; the sync cancels the fake's booking. */
    snprintf(request, sizeof request, "{\"retell_call_id\":\"call_anon\",\"appointment_id\":%lld,\"confirmed\":true}", id);
    expect(callbook_cancel_appointment(h, request, &out), &out, 3, "\"code\":\"caller_not_verified\"", "stranger's cancel");
    snprintf(request, sizeof request, "{\"retell_call_id\":\"call_max\",\"date\":\"2099-01-09\",\"confirmed\":true}");
    snprintf(want, sizeof want, "{\"change\":{\"appointment_id\":%lld,", id);
    CHECK(callbook_cancel_appointment(h, request, &out) == 0 && has(out, want) && has(out, "\"kind\":\"cancel\"") &&
              has(out, "\"status\":\"cancelled\"") &&
              has(out, "\"repeated\":false"), "cancelled by date: %s", out);
    callbook_free(out);
    expect(callbook_cancel_appointment(h, request, &out), &out, 0, "\"repeated\":true", "Retell's retry: the same");
    expect(callbook_cancel_appointment(h, NULL, &out), &out, 2, "null_argument", "cancel, NULL request");
    expect(callbook_run_sync_once(h, sync, &out), &out, 0, "\"synced\":1", "the cancel reaches the fake");
    CHECK(has(fake_send(&fake, "stats", answer, sizeof answer), "\"live_bookings\":0"), "no live booking: %s", answer);

    /* Callbacks: filed for the withheld number, listed, done. */
    CHECK(callbook_request_callback(h, "{\"retell_call_id\":\"call_anon\",\"customer_name\":\"Jane\","
                                       "\"phone\":\"0151 7654321\",\"reason\":\"cancel\"}", &out) == 0 &&
              has(out, "\"phone\":\"+491517654321\"") && has(out, "\"status\":\"open\""), "callback filed: %s", out);
    long long callback = json_int(out, "id");
    callbook_free(out);
    expect(callbook_request_callback(h, "{\"retell_call_id\":\"call_anon\",\"customer_name\":\" \"}", &out), &out, 2,
           "\"code\":\"customer_name_required\"", "callback without a name");
    expect(callbook_request_callback(h, "{\"retell_call_id\":\"call_nope\",\"customer_name\":\"X\"}", &out), &out, 3,
           "\"code\":\"call_not_found\"", "callback for an unknown call");
    expect(callbook_callback_list(h, NULL, &out), &out, 0, "\"customer_name\":\"Jane\"", "open callbacks");
    expect(callbook_callback_list(h, "later", &out), &out, 2, "\"code\":\"invalid_argument\"", "unknown status");
    expect(callbook_callback_done(h, callback, "Ada", &out), &out, 0, "\"done_by\":\"Ada\"", "called back");
    expect(callbook_callback_done(h, callback, NULL, &out), &out, 0, "\"done_by\":\"Ada\"", "done twice: as it was");
    expect(callbook_callback_done(h, 999, NULL, &out), &out, 3, "\"code\":\"callback_not_found\"", "no such callback");
    expect(callbook_callback_done(h, callback, " ", &out), &out, 2, "\"code\":\"operator_required\"", "done by nobody");
    expect(callbook_callback_list(h, "open", &out), &out, 0, "{\"callbacks\":[]}", "none open");
    expect(callbook_callback_list(h, "all", &out), &out, 0, "\"status\":\"done\"", "all of them");

    /* The agent: signed Retell function calls, answered as serve answers them. */
    char body[1024];
    retell_body(body, sizeof body, "get_call_context", "call_max", "+49 151 2345678", "{}");
    retell_sign(body, "key_c", 0, sig, sizeof sig);
    CHECK(callbook_agent_answer(h, body, strlen(body), sig, NULL, &out) == 0 && has(out, "\"http_status\":200") &&
              has(out, "\"known_caller\":true") && has(out, "\"function\":\"get_call_context\""), "context: %s", out);
    callbook_free(out);
    retell_sign(body, "other_key", 0, sig, sizeof sig);
    expect(callbook_agent_answer(h, body, strlen(body), sig, NULL, &out), &out, 0, "\"http_status\":401", "wrong key");
    retell_body(body, sizeof body, "book_appointment", "call_max", "+49 151 2345678",
                "{\"customer_name\":\"Max\",\"date\":\"2099-01-12\",\"time\":\"10:00\"}");
    retell_sign(body, "key_c", 0, sig, sizeof sig);
    CHECK(callbook_agent_answer(h, body, strlen(body), sig, NULL, &out) == 0 && has(out, "\"http_status\":200") &&
              has(out, "\"ok\":true"), "booked by voice: %s", out);
    long long voiced = json_int(out, "appointment_id");
    callbook_free(out);
    snprintf(request, sizeof request, "{\"appointment_id\":%lld,\"confirmed\":true}", voiced);
    retell_body(body, sizeof body, "cancel_appointment", "call_anon_2", "anonymous", request);
    retell_sign(body, "key_c", 0, sig, sizeof sig);
    CHECK(callbook_agent_answer(h, body, strlen(body), sig, NULL, &out) == 0 && has(out, "\"http_status\":200") &&
              has(out, "\"ok\":false") && has(out, "\"code\":\"caller_not_verified\""), "a stranger by voice: %s", out);
    callbook_free(out);
    retell_body(body, sizeof body, "cancelAppointment", "call_max", "+49 151 2345678", request);
    retell_sign(body, "key_c", 0, sig, sizeof sig);
    CHECK(callbook_agent_answer(h, body, strlen(body), sig, NULL, &out) == 0 && has(out, "\"ok\":true") &&
              has(out, "\"function\":\"cancel_appointment\""), "cancelled by voice: %s", out);
    callbook_free(out);
    snprintf(request, sizeof request, "{\"call_id\":\"call_max\",\"date\":\"2099-01-12\"}");
    retell_sign(request, "key_c", 0, sig, sizeof sig);
    expect(callbook_agent_answer(h, request, strlen(request), sig, "find_appointments", &out), &out, 0,
           "\"appointments\":[]", "args only, the function named apart");
    retell_sign("{\"name\":", "key_c", 0, sig, sizeof sig);
    expect(callbook_agent_answer(h, "{\"name\":", 8, sig, NULL, &out), &out, 0, "\"http_status\":400", "not JSON");
    expect(callbook_agent_answer(h, body, strlen(body), NULL, NULL, &out), &out, 2, "null_argument", "NULL signature");
    expect(callbook_agent_answer(keyless, body, strlen(body), sig, NULL, &out), &out, 2, "\"code\":\"not_configured\"",
           "a handle without a Retell key");

    /* Cal.com's webhook for company 1: a booking made in Cal.com is held, once. */
    char created[32];
    time_t now = time(NULL);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    snprintf(body, sizeof body,
             "{\"triggerEvent\":\"BOOKING_CREATED\",\"createdAt\":\"%s\",\"payload\":{\"uid\":\"cal-made-there\","
             "\"bookingId\":9001,\"eventTypeId\":123,\"startTime\":\"2099-03-01T09:00:00Z\",\"endTime\":"
             "\"2099-03-01T09:30:00Z\",\"attendees\":[{\"name\":\"Guest\",\"email\":\"guest@example.com\"}],"
             "\"status\":\"ACCEPTED\"}}",
             created);
    char hex[65];
    hmac_hex("whsec_c", body, NULL, hex);
    CHECK(callbook_calcom_webhook(h, 1, body, strlen(body), hex, &out) == 0 && has(out, "\"result\":\"imported\""),
          "BOOKING_CREATED held: %s", out);
    const char *ids = has(out, "\"appointment_ids\":[") ? strstr(out, "\"appointment_ids\":[") : NULL;
    long long held = ids ? strtoll(ids + strlen("\"appointment_ids\":["), NULL, 10) : -1;
    callbook_free(out);
    expect(callbook_calcom_webhook(h, 1, body, strlen(body), hex, &out), &out, 0, "\"result\":\"already_applied\"",
           "redelivered");
    expect(callbook_calcom_webhook(h, 1, body, strlen(body) - 1, hex, &out), &out, 3, "\"code\":\"bad_signature\"",
           "a changed body");
    expect(callbook_calcom_webhook(h, 9, body, strlen(body), hex, &out), &out, 3, "\"code\":\"company_not_found\"",
           "another company's URL");
    expect(callbook_calcom_webhook(h, 1, body, strlen(body), NULL, &out), &out, 2, "null_argument", "NULL signature");

    /* Cal.com's side read back: a walk-in booked on Cal.com's page is pulled, once; drift finds the
     * webhook's booking, which the fake never held. */
    const char *uid = fake_send(&fake, "elsewhere 123 2099-02-01T09:00:00Z {\"name\":\"Walk In\",\"email\":\"w@example.com\"}",
                                answer, sizeof answer);
    CHECK(strncmp(uid, "error", 5) != 0 && *uid, "a booking made elsewhere: %s", uid);
    expect(callbook_pull_from_calcom(h, "{\"days_ahead\":40000}", &out), &out, 0, "\"imported\":1", "pulled");
    CHECK(callbook_pull_from_calcom(h, "{\"days_ahead\":40000}", &out) == 0 && has(out, "\"imported\":0") &&
              has(out, "\"known\":1"), "pulled again: nothing twice: %s", out);
    callbook_free(out);
    expect(callbook_pull_from_calcom(h, "{\"company_id\":9}", &out), &out, 3, "\"code\":\"company_not_found\"",
           "pull, no such company");
    expect(callbook_pull_from_calcom(h, "{\"dayz_ahead\":1}", &out), &out, 2, "\"code\":\"invalid_json\"", "misspelt");
    snprintf(want, sizeof want, "\"missing_in_calcom\":[%lld]", held);
    CHECK(callbook_calcom_drift(h, "{\"days_ahead\":40000}", &out) == 0 && has(out, "\"missing_locally\":[]") &&
              has(out, want), "drift: the webhook's booking %lld is not in the fake: %s", held, out);
    callbook_free(out);
    CHECK(callbook_calcom_drift(h, NULL, NULL) == CALLBOOK_STATUS_BAD_INPUT, "drift, NULL out");
    expect(callbook_calcom_drift(NULL, NULL, &out), &out, 2, "null_argument", "drift, NULL handle");

    CHECK(callbook_close(h) == 0, "close the journey handle");
    fake_stop(&fake);
}

int main(void) {
    char dir[] = "/tmp/callbook-abi-XXXXXX";
    if (!mkdtemp(dir)) return perror("mkdtemp"), 2;
    char path[256];
    snprintf(path, sizeof path, "%s/abi.db", dir);
    char *out = NULL;

    /* Opening: bad options are refused with the error JSON and no handle. */
    CallbookHandle *h = (CallbookHandle *)1;
    char *error = NULL;
    CHECK(callbook_open(path, "{\"synchronus\":\"normal\"}", &h, &error) == CALLBOOK_STATUS_BAD_INPUT, "misspelt option");
    CHECK(h == NULL && has(error, "\"code\":\"invalid_json\""), "no handle, error %s", error ? error : "NULL");
    callbook_free(error);
    CHECK(callbook_open(NULL, NULL, &h, &error) == CALLBOOK_STATUS_BAD_INPUT && has(error, "null_argument"), "NULL target");
    callbook_free(error);
    CHECK(callbook_open(path, NULL, NULL, NULL) == CALLBOOK_STATUS_BAD_INPUT, "NULL out");
    /* The test books in 2099 (always in the future): past the default 365-day horizon. */
    CHECK(callbook_open(path, "{\"synchronous\":\"normal\",\"horizon_days\":40000}", &h, &error) == CALLBOOK_STATUS_OK, "open");
    CHECK(h != NULL && error == NULL, "handle and no error");

    /* Import and register. */
    expect(callbook_import(h, DIRECTORY, &out), &out, 0, "\"calls\":2", "import");
    expect(callbook_import(h, "{\"companies\":[{\"id\":1}]}", &out), &out, 2, "\"code\":\"invalid_import\"", "bad import");
    expect(callbook_register_call(h, "{\"retell_call_id\":\"call_dialled\",\"from_number\":\"+4917012345678\","
                                     "\"to_number\":\"+49 30 1234567\"}", &out), &out, 0, "\"branch_id\":1", "register by dialled number");

    /* Book: anonymous, idempotent, known. */
    const char *anon = "{\"retell_call_id\":\"call_anon\",\"customer_name\":\"Jane Doe\",\"service_id\":1,"
                       "\"start\":\"2099-01-08T13:00:00Z\"}";
    CHECK(callbook_book(h, anon, &out) == 0, "book anonymous: %s", out);
    CHECK(has(out, "\"anonymous\":true") && has(out, "\"customer_phone\":\"anonymous_"), "anonymous: %s", out);
    CHECK(has(out, "\"starts_at\":\"2099-01-08T13:00:00Z\"") && has(out, "\"status\":\"confirmed\"") &&
              has(out, "\"calcom_sync_status\":\"pending\""),
          "book JSON: %s", out);
    long long first = json_int(out, "appointment_id");
    callbook_free(out);
    CHECK(callbook_book(h, anon, &out) == 0 && json_int(out, "appointment_id") == first, "retried booking: %s", out);
    callbook_free(out);
    expect(callbook_book(h, "{\"retell_call_id\":\"call_known\",\"customer_name\":\"Max\",\"service_id\":1,"
                            "\"date\":\"2099-01-09\",\"time\":\"10:00\"}", &out), &out, 0, "\"customer_phone\":\"+491512345678\"", "known caller, local time");

    /* Errors: code, message, status. */
    expect(callbook_book(h, "{\"retell_call_id\":\"call_nope\",\"customer_name\":\"X\",\"service_id\":1,"
                            "\"start\":\"2099-01-08T13:00:00Z\"}", &out), &out, 3, "\"code\":\"call_not_found\",\"message\":\"", "unknown call");
    expect(callbook_book(h, "{\"retell_call_id\":\"call_anon\",\"customer_name\":\"X\",\"service_id\":1,"
                            "\"start\":\"2001-01-01T10:00:00Z\"}", &out), &out, 3, "\"code\":\"start_in_past\"", "past");
    expect(callbook_book(h, "{\"retell_call_id\":\"call_anon\",\"customer_name\":\"\",\"service_id\":1,"
                            "\"start\":\"2099-01-08T13:00:00Z\"}", &out), &out, 2, "\"code\":\"customer_name_required\"", "no name");
    expect(callbook_book(h, "{not json", &out), &out, 2, "\"code\":\"invalid_json\"", "malformed");
    const char *chair = "{\"retell_call_id\":\"call_%s\",\"customer_name\":\"A\",\"service_id\":2,"
                        "\"start\":\"2099-01-10T09:00:00Z\"}";
    char request[256];
    snprintf(request, sizeof request, chair, "anon");
    expect(callbook_book(h, request, &out), &out, 0, "confirmed", "the chair's one place");
    snprintf(request, sizeof request, chair, "known");
    expect(callbook_book(h, request, &out), &out, 3, "\"code\":\"slot_unavailable\"", "capacity reached");
    CHECK(callbook_book(h, request, &out) == 3 && has(out, "\"alternatives\":["), "alternatives: %s", out);
    callbook_free(out);

    /* Reads. */
    expect(callbook_stats(h, &out), &out, 0, "\"customers_anonymous\":2", "stats");
    expect(callbook_review_list(h, &out), &out, 0, "{\"appointments\":[]}", "review list");
    expect(callbook_review_retry(h, 999, &out), &out, 3, "\"code\":\"appointment_not_found\"", "retry unknown");
    expect(callbook_review_retry(h, first, &out), &out, 3, "\"code\":\"not_in_review\"", "retry not flagged");
    expect(callbook_review_resolve(h, first, NULL, "c", &out), &out, 2, "null_argument", "resolve without note");
    expect(callbook_review_resolve(h, first, " ", NULL, &out), &out, 2, "note_required", "resolve with a blank note");

    /* Pure functions. */
    expect(callbook_detect_anonymous(NULL, &out), &out, 0, "{\"anonymous\":true,\"reason\":\"missing\"}", "no number");
    expect(callbook_detect_anonymous("sip:anonymous@anonymous.invalid", &out), &out, 0, "\"anonymous\":true", "sip");
    expect(callbook_detect_anonymous("+4915123456789", &out), &out, 0, "{\"anonymous\":false,\"reason\":null}", "real");
    expect(callbook_normalize_email("Max at Example Dot Com", &out), &out, 0, "{\"email\":\"max@example.com\"}", "spoken");
    expect(callbook_normalize_email("  ", &out), &out, 0, "{\"email\":null}", "blank email");
    expect(callbook_placeholder_phone("Jane Doe", 42, 1700000000, &out), &out, 0,
           "{\"phone\":\"anonymous_1700000000_2ded75a0\"}", "placeholder");
    expect(callbook_validate_booking_request("{\"retell_call_id\":\" \",\"customer_name\":\"J\"}", &out), &out, 0,
           "\"code\":\"call_id_required\"", "validate");
    expect(callbook_validate_booking_request("{\"retell_call_id\":\"c\",\"customer_name\":\"J\",\"start\":"
                                             "\"2030-01-08T13:00:00Z\"}", &out), &out, 0, "{\"problems\":[]}", "valid request");
    const char *body = "{\"name\":\"book_appointment\",\"call\":{\"call_id\":\"call_abc\",\"from_number\":"
                       "\"+14155550100\"},\"args\":{\"customer_name\":\"J\xc3\xbcrgen M\xc3\xbcller\",\"date\":"
                       "\"morgen\",\"time\":\"14:30\"}}";
    const char *sig = "v=1900000000000,d=60f0a3d20bc78ce34638772c9357d366ab0cc7a04c6b5961d14b0b85328467dd";
    expect(callbook_verify_retell_signature(body, strlen(body), sig, "key_live_123", 1900000000000LL, &out), &out, 0,
           "{\"valid\":true}", "signature");
    expect(callbook_verify_retell_signature(body, strlen(body) - 1, sig, "key_live_123", 1900000000000LL, &out), &out,
           0, "{\"valid\":false}", "signature over a changed body");
    expect(callbook_verify_retell_signature(body, strlen(body), sig, "key_live_123", 1900000000000LL + 360000, &out), &out, 0, "{\"valid\":false}", "stale signature");

    /* NULL arguments: an error answer, never a crash. */
    expect(callbook_book(NULL, anon, &out), &out, 2, "\"code\":\"null_argument\"", "NULL handle");
    expect(callbook_book(h, NULL, &out), &out, 2, "\"code\":\"null_argument\"", "NULL request");
    CHECK(callbook_book(h, anon, NULL) == CALLBOOK_STATUS_BAD_INPUT, "NULL out_json");
    expect(callbook_placeholder_phone(NULL, 1, 1, &out), &out, 2, "null_argument", "NULL name");
    expect(callbook_verify_retell_signature(NULL, 5, sig, "k", 0, &out), &out, 2, "null_argument", "NULL body");
    expect(callbook_stats((CallbookHandle *)12345, &out), &out, 2, "\"code\":\"invalid_handle\"", "made-up handle");

    /* The free registry: once, and never a foreign pointer. */
    CHECK(callbook_detect_anonymous("x", &out) == 0, "string to free");
    CHECK(callbook_free(out) == 0, "first free");
    CHECK(callbook_free(out) == CALLBOOK_STATUS_BAD_INPUT, "double free refused");
    char local[] = "not ours";
    CHECK(callbook_free(local) == CALLBOOK_STATUS_BAD_INPUT, "foreign pointer refused");
    char *heap = strdup("malloc'd");
    CHECK(callbook_free(heap) == CALLBOOK_STATUS_BAD_INPUT, "malloc'd pointer refused");
    free(heap);
    CHECK(callbook_free(NULL) == 0, "free(NULL)");

    /* Threads booking on one handle. */
    pthread_t threads[THREADS];
    struct worker workers[THREADS];
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (struct worker){h, i, 0};
        pthread_create(&threads[i], NULL, book_many, &workers[i]);
    }
    int booked = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        booked += workers[i].ok;
    }
    CHECK(booked == THREADS * PER_THREAD, "threads booked %d of %d", booked, THREADS * PER_THREAD);
    CHECK(callbook_stats(h, &out) == 0 && json_int(out, "pending") == 3 + THREADS * PER_THREAD, "pending: %s", out);
    CHECK(has(out, "\"customers_known\":1"), "one known customer across threads: %s", out);
    callbook_free(out);

    /* The HMAC the journey signs with, on the shared vector. */
    char stamp_body[1024], hex[65];
    snprintf(stamp_body, sizeof stamp_body, "%s", body);
    hmac_hex("key_live_123", stamp_body, "1900000000000", hex);
    CHECK(strcmp(hex, sig + strlen("v=1900000000000,d=")) == 0, "HMAC-SHA256 in this test: %s", hex);
    journey(dir, h);

    /* Close: once; the handle is dead afterwards. */
    CHECK(callbook_close(h) == 0, "close");
    CHECK(callbook_close(h) == CALLBOOK_STATUS_BAD_INPUT, "double close refused");
    expect(callbook_stats(h, &out), &out, 2, "invalid_handle", "closed handle");
    CHECK(callbook_close(NULL) == 0, "close(NULL)");

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
