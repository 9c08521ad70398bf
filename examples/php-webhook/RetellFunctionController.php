<?php

declare(strict_types=1);

namespace CallbookExample;

use Callbook\Callbook;
use Callbook\CallbookException;

/**
 * Every Retell custom function on one endpoint, shaped like the Laravel
 * invokable controller it replaces: the raw body and its signature go to
 * callbook's agent, which verifies, parses and runs `book_appointment`,
 * `check_availability`, `get_call_context`, `find_appointments`,
 * `cancel_appointment`, `reschedule_appointment` and `request_callback`,
 * and answers exactly as `callbook serve` does (401 bad signature, 400
 * malformed, 200 with `ok` and a sentence for the agent to speak). In Laravel:
 *
 *     Route::post('/retell/function/{function?}', RetellFunctionController::class);
 *     public function __invoke(Request $request, ?string $function = null) {
 *         [$status, $body] = $this->handle($request->getContent(), $request->header('x-retell-signature', ''), $function);
 *         return response()->json($body, $status);
 *     }
 *
 * No rule lives here: the Callbook is opened with `retell_api_key`.
 */
final class RetellFunctionController
{
    public function __construct(private readonly Callbook $book)
    {
    }

    /**
     * `$function` names the function when the URL does (Retell's "args only" form).
     *
     * @return array{int, array} HTTP status and JSON body
     */
    public function handle(string $rawBody, string $signature, ?string $function = null): array
    {
        try {
            $answer = $this->book->agentAnswer($rawBody, $signature, $function);
            return [$answer['http_status'], $answer['body']];
        } catch (CallbookException $e) {
            if ($e->errorCode === 'not_configured') {
                return [503, ['ok' => false, 'code' => 'not_configured', 'message' => 'RETELL_API_KEY is not set']];
            }
            return [500, ['ok' => false, 'code' => 'internal', 'message' => 'internal error']];
        }
    }
}
