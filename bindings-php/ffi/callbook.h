/* callbook.h for PHP FFI::cdef (generated with it; do not edit). */

typedef enum CallbookStatus {
  CALLBOOK_STATUS_OK = 0,
  CALLBOOK_STATUS_FAILED = 1,
  CALLBOOK_STATUS_BAD_INPUT = 2,
  CALLBOOK_STATUS_REFUSED = 3,
} CallbookStatus;

typedef struct CallbookHandle CallbookHandle;

int32_t callbook_open(const char *target,
                      const char *options_json,
                      struct CallbookHandle **out,
                      char **error_json);

int32_t callbook_close(struct CallbookHandle *handle);

int32_t callbook_free(char *s);

int32_t callbook_import(struct CallbookHandle *handle, const char *data_json, char **out_json);

int32_t callbook_register_call(struct CallbookHandle *handle,
                               const char *call_json,
                               char **out_json);

int32_t callbook_book(struct CallbookHandle *handle, const char *request_json, char **out_json);

int32_t callbook_check_availability(struct CallbookHandle *handle,
                                    const char *request_json,
                                    char **out_json);

int32_t callbook_run_sync_once(struct CallbookHandle *handle,
                               const char *options_json,
                               char **out_json);

int32_t callbook_review_list(struct CallbookHandle *handle, char **out_json);

int32_t callbook_review_retry(struct CallbookHandle *handle,
                              int64_t appointment_id,
                              char **out_json);

int32_t callbook_review_resolve(struct CallbookHandle *handle,
                                int64_t appointment_id,
                                const char *note,
                                const char *by,
                                char **out_json);

int32_t callbook_stats(struct CallbookHandle *handle, char **out_json);

int32_t callbook_detect_anonymous(const char *from_number, char **out_json);

int32_t callbook_normalize_email(const char *email, char **out_json);

int32_t callbook_placeholder_phone(const char *name,
                                   int64_t call_db_id,
                                   int64_t unix_seconds,
                                   char **out_json);

int32_t callbook_validate_booking_request(const char *request_json, char **out_json);

int32_t callbook_verify_retell_signature(const char *body,
                                         size_t body_len,
                                         const char *header,
                                         const char *api_key,
                                         int64_t now_ms,
                                         char **out_json);

int32_t callbook_call_context(struct CallbookHandle *handle,
                              const char *retell_call_id,
                              char **out_json);

int32_t callbook_find_appointments(struct CallbookHandle *handle,
                                   const char *retell_call_id,
                                   const char *date,
                                   char **out_json);

int32_t callbook_appointments_by_phone(struct CallbookHandle *handle,
                                       int64_t company_id,
                                       const char *phone,
                                       char **out_json);

int32_t callbook_cancel_appointment(struct CallbookHandle *handle,
                                    const char *request_json,
                                    char **out_json);

int32_t callbook_reschedule_appointment(struct CallbookHandle *handle,
                                        const char *request_json,
                                        char **out_json);

int32_t callbook_appointment_changes(struct CallbookHandle *handle,
                                     int64_t appointment_id,
                                     char **out_json);

int32_t callbook_request_callback(struct CallbookHandle *handle,
                                  const char *request_json,
                                  char **out_json);

int32_t callbook_callback_list(struct CallbookHandle *handle, const char *status, char **out_json);

int32_t callbook_callback_done(struct CallbookHandle *handle,
                               int64_t callback_id,
                               const char *by,
                               char **out_json);

int32_t callbook_agent_answer(struct CallbookHandle *handle,
                              const char *body,
                              size_t body_len,
                              const char *signature,
                              const char *function,
                              char **out_json);

int32_t callbook_calcom_webhook(struct CallbookHandle *handle,
                                int64_t company_id,
                                const char *body,
                                size_t body_len,
                                const char *signature,
                                char **out_json);

int32_t callbook_pull_from_calcom(struct CallbookHandle *handle,
                                  const char *options_json,
                                  char **out_json);

int32_t callbook_calcom_drift(struct CallbookHandle *handle,
                              const char *options_json,
                              char **out_json);
