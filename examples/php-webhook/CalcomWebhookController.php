<?php

declare(strict_types=1);

namespace CallbookExample;

use Callbook\Callbook;
use Callbook\CallbookException;

/**
 * Cal.com's webhook for one company (`POST /calcom/webhook/{company}`), each
 * company with its own secret (`calcom_webhook_secret` in the import): a
 * booking made, cancelled or moved in Cal.com is applied to the appointments,
 * as `callbook serve` does. In Laravel:
 *
 *     Route::post('/calcom/webhook/{company}', CalcomWebhookController::class);
 *     public function __invoke(Request $request, int $company) {
 *         [$status, $body] = $this->handle($company, $request->getContent(), $request->header('X-Cal-Signature-256', ''));
 *         return response()->json($body, $status);
 *     }
 */
final class CalcomWebhookController
{
    public function __construct(private readonly Callbook $book)
    {
    }

    /** @return array{int, array} HTTP status and JSON body */
    public function handle(int $company, string $rawBody, string $signature): array
    {
        try {
            return [200, ['ok' => true] + $this->book->calcomWebhook($company, $rawBody, $signature)];
        } catch (CallbookException $e) {
            $status = match (true) {
                $e->errorCode === 'bad_signature' => 401,
                $e->errorCode === 'company_not_found' => 404,
                $e->errorCode === 'webhook_not_configured' => 503,
                $e->status === 1 => 500,
                default => 400,
            };
            $message = $status === 500 ? 'internal error' : $e->getMessage();
            return [$status, ['ok' => false, 'code' => $status === 500 ? 'internal' : $e->errorCode, 'message' => $message]];
        }
    }
}
