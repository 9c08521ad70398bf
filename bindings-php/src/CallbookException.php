<?php

declare(strict_types=1);

namespace Callbook;

/**
 * An error from callbook: `$errorCode` is the core's stable snake_case code
 * (the CLI's `error.code`), the message its sentence.
 */
final class CallbookException extends \RuntimeException
{
    /**
     * @param string   $errorCode    e.g. "call_not_found", "slot_unavailable", "invalid_json"
     * @param int      $status       the CLI's exit code: 2 bad input, 3 refused by a domain rule, 1 other
     * @param string[] $alternatives for "slot_unavailable": the nearest free starts (UTC RFC 3339)
     * @param array    $details      the error's other fields: `appointments` for "multiple_found",
     *                               `deadline` for "too_late_to_cancel", `problems`, ...
     */
    public function __construct(
        public readonly string $errorCode,
        string $message,
        public readonly int $status = 1,
        public readonly array $alternatives = [],
        public readonly array $details = [],
    ) {
        parent::__construct($message, $status);
    }
}
