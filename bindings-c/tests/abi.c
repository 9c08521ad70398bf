/* The C ABI from C: compiled with the system cc against callbook.h and
 * libcallbook.so (tests/php/run builds and runs it). A temporary database:
 * import, register a call, book, errors with their codes and statuses, the
 * pure functions, NULL arguments, the free registry, and threads booking on
 * one handle. Prints "N passed, N failed" and exits non-zero on a failure. */
#define _GNU_SOURCE
#include "callbook.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
