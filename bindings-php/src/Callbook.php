<?php

declare(strict_types=1);

namespace Callbook;

/**
 * callbook in-process through its C ABI (libcallbook.so, PHP FFI). Arrays in
 * and out use the CLI's `--json` shapes (snake_case keys); errors throw
 * CallbookException with the core's code. No rule lives here: each method
 * encodes its argument, calls the library once and decodes the answer.
 *
 * FFI must be enabled: the CLI allows it by default (ffi.enable=preload);
 * other SAPIs (php -S, FPM) need ffi.enable=1 or a preload script.
 */
final class Callbook
{
    /** @var array<string, \FFI> one loaded library per path */
    private static array $libraries = [];

    private \FFI $ffi;
    private ?\FFI\CData $handle;
    /** Where the library writes its answer (char*), reused by every call. */
    private \FFI\CData $out;
    private \FFI\CData $outAddress;

    /**
     * Opens (creating and migrating) a SQLite file, or a postgres:// or
     * mysql:// URL. Options: `library` (path of libcallbook.so; else env
     * CALLBOOK_LIBRARY, else <repo>/target/release/libcallbook.so),
     * `synchronous` ("full", the default: a confirmed booking survives a
     * power cut; or "normal"), `horizon_days`, `retell_api_key` (what
     * agentAnswer() verifies Retell's signatures with) and `pool_size`
     * (connections per process on a database server, default 16).
     */
    public function __construct(string $dbPathOrUrl, array $options = [])
    {
        $this->ffi = self::library($options['library'] ?? null);
        unset($options['library']);
        [$this->out, $this->outAddress] = self::outSlot($this->ffi);
        $handle = $this->ffi->new('CallbookHandle*');
        $status = $this->ffi->callbook_open(
            $dbPathOrUrl,
            $options === [] ? null : self::encode($options),
            \FFI::addr($handle),
            $this->outAddress,
        );
        if ($status !== 0) {
            throw self::failure(self::take($this->ffi, $this->out), $status);
        }
        $this->handle = $handle;
    }

    public function __destruct()
    {
        $this->close();
    }

    /** Closes the database (also done when the object goes away). */
    public function close(): void
    {
        if ($this->handle !== null) {
            $this->ffi->callbook_close($this->handle);
            $this->handle = null;
        }
    }

    /** Companies, branches, services and calls (the CLI's import file) → counts. */
    public function import(array $data): array
    {
        return $this->call('callbook_import', self::encode($data));
    }

    /** `['retell_call_id'=>, 'company_id'?, 'branch_id'?, 'from_number'?, 'to_number'?]` → the call. */
    public function registerCall(array $call): array
    {
        return $this->call('callbook_register_call', self::encode($call));
    }

    /**
     * `['retell_call_id'=>, 'customer_name'=>, 'customer_email'?, 'service_id'?,
     * 'start' | 'date' + 'time']` → `['appointment_id', 'customer_id', 'anonymous',
     * 'customer_phone', 'starts_at', 'status', 'calcom_sync_status']`.
     */
    public function book(array $request): array
    {
        return $this->call('callbook_book', self::encode($request));
    }

    /**
     * `['service_id'?, 'date'=>, 'retell_call_id'?, 'calcom_url'?]` →
     * `['service_id', 'date', 'time_zone', 'slots', 'cached', 'remembered']`.
     */
    public function checkAvailability(array $request): array
    {
        return $this->call('callbook_check_availability', self::encode($request));
    }

    /**
     * Runs the sync worker until no job is due. Options: `calcom_url`,
     * `threads`, `timeout_ms`, `email_fallback`, `backoff_ms` (list) → the report.
     */
    public function syncOnce(array $options = []): array
    {
        return $this->call('callbook_run_sync_once', $options === [] ? null : self::encode($options));
    }

    /** `['appointments' => [...]]`: the manual-review list. */
    public function reviewList(): array
    {
        return $this->call('callbook_review_list');
    }

    /** Back to pending with a fresh sync job → `['appointment' => [...]]`. */
    public function reviewRetry(int $appointmentId): array
    {
        return $this->call('callbook_review_retry', $appointmentId);
    }

    /** Off the review list, recording who and why → `['appointment' => [...]]`. */
    public function reviewResolve(int $appointmentId, string $note, string $by): array
    {
        return $this->call('callbook_review_resolve', $appointmentId, $note, $by);
    }

    /** Appointments by sync status, jobs by state, manual reviews, customers, breakers. */
    public function stats(): array
    {
        return $this->call('callbook_stats');
    }

    /**
     * What the agent is told when a call starts: `['today', 'weekday', 'time_zone',
     * 'branch', 'known_caller', 'customer_name'?, 'upcoming', 'services']`.
     */
    public function callContext(string $retellCallId): array
    {
        return $this->call('callbook_call_context', $retellCallId);
    }

    /**
     * The calling customer's upcoming appointments (at most 5), on one local
     * day when `$date` is given → `['appointments' => [...]]`; throws
     * `caller_not_verified` for a caller nobody knows.
     */
    public function findAppointments(string $retellCallId, ?string $date = null): array
    {
        return $this->call('callbook_find_appointments', $retellCallId, $date);
    }

    /** A company's upcoming appointments for a phone number (an operator's search) → `['appointments' => [...]]`. */
    public function appointmentsByPhone(int $companyId, string $phone): array
    {
        return $this->call('callbook_appointments_by_phone', $companyId, $phone);
    }

    /**
     * `['retell_call_id' | 'operator', 'appointment_id'? | 'date' + 'time'?, 'reason'?,
     * 'confirmed'?, 'force'?]` → `['change' => ['appointment_id', 'kind', 'needs_confirmation',
     * 'repeated', 'starts_at', 'status', 'calcom_sync_status']]`. Unconfirmed, nothing is written.
     */
    public function cancelAppointment(array $request): array
    {
        return $this->call('callbook_cancel_appointment', self::encode($request));
    }

    /** As cancelAppointment(), plus `new_start` or `new_date` + `new_time` → `['change' => [..., 'previous_starts_at']]`. */
    public function rescheduleAppointment(array $request): array
    {
        return $this->call('callbook_reschedule_appointment', self::encode($request));
    }

    /** An appointment's cancels and moves, oldest first → `['changes' => [...]]`. */
    public function appointmentChanges(int $appointmentId): array
    {
        return $this->call('callbook_appointment_changes', $appointmentId);
    }

    /** `['retell_call_id', 'customer_name', 'reason'?, 'phone'?]` → `['callback' => [...]]`. */
    public function requestCallback(array $request): array
    {
        return $this->call('callbook_request_callback', self::encode($request));
    }

    /** Callbacks, oldest first: "open", "done" or "all" → `['callbacks' => [...]]`. */
    public function callbackList(string $status = 'open'): array
    {
        return $this->call('callbook_callback_list', $status);
    }

    /** Marks a callback done, by whom (default "operator") → `['callback' => [...]]`. */
    public function callbackDone(int $callbackId, ?string $by = null): array
    {
        return $this->call('callbook_callback_done', $callbackId, $by);
    }

    /**
     * Answers one Retell custom function call as `callbook serve` answers
     * `POST /retell/function`: the raw body and its `x-retell-signature`,
     * verified with the `retell_api_key` this object was opened with;
     * `$function` names the function for the "args only" form →
     * `['http_status' => int, 'body' => [...], 'function' => ?string]`.
     */
    public function agentAnswer(string $rawBody, string $signature, ?string $function = null): array
    {
        return $this->call('callbook_agent_answer', $rawBody, strlen($rawBody), $signature, $function);
    }

    /**
     * Applies one Cal.com webhook delivery (raw body, `X-Cal-Signature-256`)
     * to a company, verified with its `calcom_webhook_secret` →
     * `['result' => 'imported' | 'cancelled' | 'rescheduled' | 'already_applied' | ..., ...]`.
     */
    public function calcomWebhook(int $companyId, string $rawBody, string $signature): array
    {
        return $this->call('callbook_calcom_webhook', $companyId, $rawBody, strlen($rawBody), $signature);
    }

    /**
     * Holds every Cal.com booking of the companies' event types as an
     * appointment (resumable). Options: `company_id`, `days_back`,
     * `days_ahead`, `calcom_url`, `requests_per_minute`, `timeout_ms` → the report.
     */
    public function pullFromCalcom(array $options = []): array
    {
        return $this->call('callbook_pull_from_calcom', $options === [] ? null : self::encode($options));
    }

    /**
     * Where Cal.com and the appointments disagree (the pull's options) →
     * `['companies' => [['company_id', 'missing_locally', 'missing_in_calcom',
     * 'different_start', 'cancelled_one_side']], 'requests']`.
     */
    public function calcomDrift(array $options = []): array
    {
        return $this->call('callbook_calcom_drift', $options === [] ? null : self::encode($options));
    }

    /** `['anonymous' => bool, 'reason' => ?string]`; null means no number at all. */
    public static function detectAnonymous(?string $fromNumber): array
    {
        return self::pure('callbook_detect_anonymous', $fromNumber);
    }

    /** The address as callbook stores it, or null (none given, or not an address). */
    public static function normalizeEmail(?string $text): ?string
    {
        return self::pure('callbook_normalize_email', $text)['email'];
    }

    /** An anonymous customer's placeholder phone: `anonymous_<unix>_<md5 hex 8>`. */
    public static function placeholderPhone(string $name, int $callDbId, int $unixSeconds): string
    {
        return self::pure('callbook_placeholder_phone', $name, $callDbId, $unixSeconds)['phone'];
    }

    /** Every problem `[['field', 'code', 'message'], ...]` a booking would refuse; empty when valid. */
    public static function validateBookingRequest(array $request): array
    {
        return self::pure('callbook_validate_booking_request', self::encode($request))['problems'];
    }

    /** Does `x-retell-signature` sign this raw body with the key, within 5 minutes of $nowMs? */
    public static function verifyRetellSignature(string $body, string $header, string $key, int $nowMs): bool
    {
        return self::pure('callbook_verify_retell_signature', $body, strlen($body), $header, $key, $nowMs)['valid'];
    }

    /** Loads the library once per path (FFI::cdef with the generated declarations). */
    private static function library(?string $path): \FFI
    {
        $env = getenv('CALLBOOK_LIBRARY');
        $path ??= ($env !== false && $env !== '') ? $env : dirname(__DIR__, 2) . '/target/release/libcallbook.so';
        if (isset(self::$libraries[$path])) {
            return self::$libraries[$path];
        }
        if (!is_file($path)) {
            throw new CallbookException('library_not_found', "no callbook library at $path (cargo build --release -p callbook-c)");
        }
        try {
            $ffi = \FFI::cdef((string) file_get_contents(__DIR__ . '/../ffi/callbook.h'), $path);
        } catch (\Error $e) {
            // FFI disabled in this SAPI, or a library of another version.
            throw new CallbookException('ffi_unavailable', $e->getMessage(), 1);
        }
        return self::$libraries[$path] = $ffi;
    }

    /** @return array{\FFI\CData, \FFI\CData} a char* and its address */
    private static function outSlot(\FFI $ffi): array
    {
        $out = $ffi->new('char*');
        return [$out, \FFI::addr($out)];
    }

    private function call(string $function, mixed ...$args): array
    {
        if ($this->handle === null) {
            throw new CallbookException('closed', 'this Callbook is closed', 2);
        }
        $status = $this->ffi->$function($this->handle, ...[...$args, $this->outAddress]);
        return self::answer(self::take($this->ffi, $this->out), $status);
    }

    private static function pure(string $function, mixed ...$args): array
    {
        $ffi = self::library(null);
        [$out, $address] = self::outSlot($ffi);
        $status = $ffi->$function(...[...$args, $address]);
        return self::answer(self::take($ffi, $out), $status);
    }

    /** Copies the library's string and frees it. */
    private static function take(\FFI $ffi, \FFI\CData $out): string
    {
        $text = \FFI::string($out);
        $ffi->callbook_free($out);
        return $text;
    }

    private static function answer(string $json, int $status): array
    {
        if ($status !== 0) {
            throw self::failure($json, $status);
        }
        return json_decode($json, true, 512, JSON_THROW_ON_ERROR);
    }

    private static function failure(string $json, int $status): CallbookException
    {
        $error = json_decode($json, true)['error'] ?? ['code' => 'internal', 'message' => $json];
        $details = array_diff_key($error, ['code' => true, 'message' => true]);
        return new CallbookException($error['code'], $error['message'], $status, $error['alternatives'] ?? [], $details);
    }

    /** JSON for the library; an empty array is an empty object. */
    private static function encode(array $value): string
    {
        return json_encode(
            $value === [] ? new \stdClass() : $value,
            JSON_THROW_ON_ERROR | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES,
        );
    }
}
