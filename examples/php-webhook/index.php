<?php

// Retell's functions and Cal.com's webhook on PHP's built-in server:
//   RETELL_API_KEY=... CALLBOOK_DB=callbook.db php -d ffi.enable=1 -S 127.0.0.1:8080 index.php
// (php -S is not the CLI SAPI, so FFI needs ffi.enable=1.)
//   POST /retell/function[/{name}]   every Retell custom function (x-retell-signature)
//   POST /calcom/webhook/{company}   Cal.com's webhook for one company (X-Cal-Signature-256)

declare(strict_types=1);

require __DIR__ . '/../../bindings-php/src/CallbookException.php';
require __DIR__ . '/../../bindings-php/src/Callbook.php';
require __DIR__ . '/RetellFunctionController.php';
require __DIR__ . '/CalcomWebhookController.php';

use Callbook\Callbook;
use CallbookExample\CalcomWebhookController;
use CallbookExample\RetellFunctionController;

const MAX_BODY = 64 * 1024;

function reply(int $status, array $body): void
{
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($body, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES);
}

$path = (string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$retell = preg_match('#^/retell/function(?:/([A-Za-z_]+))?$#', $path, $function) === 1;
$calcom = preg_match('#^/calcom/webhook/([0-9]{1,18})$#', $path, $company) === 1;
if ($_SERVER['REQUEST_METHOD'] !== 'POST' || !($retell || $calcom)) {
    reply(404, ['ok' => false, 'code' => 'not_found']);
    return;
}
if ((int) ($_SERVER['CONTENT_LENGTH'] ?? 0) > MAX_BODY) {
    reply(413, ['ok' => false, 'code' => 'body_too_large']);
    return;
}
$book = new Callbook(getenv('CALLBOOK_DB') ?: 'callbook.db', array_filter([
    'retell_api_key' => getenv('RETELL_API_KEY') ?: null,
    'horizon_days' => (int) getenv('CALLBOOK_HORIZON_DAYS'),
]));
$body = (string) file_get_contents('php://input', false, null, 0, MAX_BODY);
[$status, $answer] = $retell
    ? (new RetellFunctionController($book))->handle($body, $_SERVER['HTTP_X_RETELL_SIGNATURE'] ?? '', $function[1] ?? null)
    : (new CalcomWebhookController($book))->handle((int) $company[1], $body, $_SERVER['HTTP_X_CAL_SIGNATURE_256'] ?? '');
reply($status, $answer);
