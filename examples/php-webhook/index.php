<?php

// The Retell function endpoint on PHP's built-in server:
//   RETELL_API_KEY=... CALLBOOK_DB=callbook.db php -d ffi.enable=1 -S 127.0.0.1:8080 index.php
// (php -S is not the CLI SAPI, so FFI needs ffi.enable=1.) POST /retell/function.

declare(strict_types=1);

require __DIR__ . '/../../bindings-php/src/CallbookException.php';
require __DIR__ . '/../../bindings-php/src/Callbook.php';
require __DIR__ . '/RetellFunctionController.php';

use Callbook\Callbook;
use CallbookExample\RetellFunctionController;

const MAX_BODY = 64 * 1024;

function reply(int $status, array $body): void
{
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($body, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES);
}

if ($_SERVER['REQUEST_METHOD'] !== 'POST' || parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) !== '/retell/function') {
    reply(404, ['ok' => false, 'code' => 'not_found']);
    return;
}
if ((int) ($_SERVER['CONTENT_LENGTH'] ?? 0) > MAX_BODY) {
    reply(413, ['ok' => false, 'code' => 'body_too_large']);
    return;
}
$controller = new RetellFunctionController(
    new Callbook(getenv('CALLBOOK_DB') ?: 'callbook.db', array_filter(['horizon_days' => (int) getenv('CALLBOOK_HORIZON_DAYS')])),
    getenv('RETELL_API_KEY') ?: '',
    static fn (): int => (int) floor(microtime(true) * 1000),
);
[$status, $body] = $controller->handle((string) file_get_contents('php://input', false, null, 0, MAX_BODY), $_SERVER['HTTP_X_RETELL_SIGNATURE'] ?? '');
reply($status, $body);
