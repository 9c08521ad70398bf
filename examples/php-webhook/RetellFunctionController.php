<?php

declare(strict_types=1);

namespace CallbookExample;

use Callbook\Callbook;
use Callbook\CallbookException;

/**
 * A Retell custom-function endpoint, shaped like a Laravel invokable
 * controller: verify the signature on the raw body, register the call, book,
 * answer with a sentence the agent speaks. In Laravel:
 *
 *     Route::post('/retell/function', RetellFunctionController::class);
 *     public function __invoke(Request $request) {
 *         [$status, $body] = $this->handle($request->getContent(), $request->header('x-retell-signature', ''));
 *         return response()->json($body, $status);
 *     }
 *
 * Only the signature, the envelope and the sentence are here; every rule is
 * callbook's.
 */
final class RetellFunctionController
{
    private const FUNCTIONS = ['book_appointment', 'bookAppointment'];

    /** @param \Closure(): int $nowMs */
    public function __construct(
        private readonly Callbook $book,
        private readonly string $retellApiKey,
        private readonly \Closure $nowMs,
        private readonly string $timeZone = 'Europe/Berlin',
    ) {
    }

    /** @return array{int, array} HTTP status and JSON body */
    public function handle(string $rawBody, string $signature): array
    {
        if (!Callbook::verifyRetellSignature($rawBody, $signature, $this->retellApiKey, ($this->nowMs)())) {
            return [401, ['ok' => false, 'code' => 'bad_signature', 'message' => 'invalid or stale x-retell-signature']];
        }
        $body = json_decode($rawBody, true);
        if (!is_array($body) || array_is_list($body) && $body !== []) {
            return [400, ['ok' => false, 'code' => 'malformed_json', 'message' => 'the body is not a JSON object']];
        }
        // With Retell's "args only" option the body is the args, holding call_id.
        $argsOnly = !array_key_exists('args', $body);
        $args = $argsOnly ? $body : (is_array($body['args']) ? $body['args'] : []);
        $name = $argsOnly ? 'book_appointment' : ($body['name'] ?? null);
        if (!in_array($name, self::FUNCTIONS, true)) {
            return [400, ['ok' => false, 'code' => 'unknown_function', 'message' => 'unknown function ' . json_encode($name)]];
        }
        $call = is_array($body['call'] ?? null) ? $body['call'] : [];
        $callId = $call['call_id'] ?? $args['call_id'] ?? null;
        if (!is_string($callId) || $callId === '') {
            return [400, ['ok' => false, 'code' => 'call_id_required', 'message' => 'no call id']];
        }
        try {
            if (isset($call['call_id'])) {
                $this->book->registerCall(array_filter([
                    'retell_call_id' => $callId, 'from_number' => $call['from_number'] ?? null,
                    'to_number' => $call['to_number'] ?? null, 'direction' => $call['direction'] ?? null,
                ], static fn ($v) => $v !== null));
            }
            $request = ['retell_call_id' => $callId, 'customer_name' => (string) ($args['customer_name'] ?? '')];
            foreach (['customer_email', 'service_id', 'start', 'date', 'time'] as $key) {
                if (isset($args[$key])) {
                    $request[$key] = $args[$key];
                }
            }
            $booking = $this->book->book($request);
            return [200, ['ok' => true, 'message' => $this->sentence($booking['starts_at']), 'appointment_id' => $booking['appointment_id']]];
        } catch (CallbookException $e) {
            if ($e->status === 1) {
                return [500, ['ok' => false, 'code' => 'internal', 'message' => 'internal error']];
            }
            // Refused or incomplete: 200, so the agent can tell the caller.
            return [200, ['ok' => false, 'code' => $e->errorCode, 'message' => $e->getMessage()]];
        }
    }

    /** The sentence the voice agent speaks back. */
    private function sentence(string $startsAt): string
    {
        $when = (new \DateTimeImmutable($startsAt))->setTimezone(new \DateTimeZone($this->timeZone));
        return "You're booked for {$when->format('l, j F \a\t H:i')}. We look forward to seeing you.";
    }
}
