package sqlstore

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
)

// ListenForWork implements mlmsoft.WorkListener on PostgreSQL: it calls
// wake, from its own goroutine, whenever work may have become due — once
// as soon as it listens (work may have become due while it did not), then
// after every transaction that enqueued volume changes (with or without a
// host transaction), created a due link, or woke a user's changes or made a
// link or a queue head due without a worker's lease, on any Store with the
// same table prefix on the same database. Notifications are sent at commit,
// so a host transaction that rolls back wakes no one. It returns ctx's
// error when ctx ends, and another error when it cannot listen (the plugin
// then tries again later, polling meanwhile).
//
// It holds one connection of db's pool for as long as it listens (count it
// when sizing the pool: see New), on which it runs LISTEN <prefix>work and
// waits for notifications. database/sql cannot wait for notifications, so
// it uses the pgx driver's connection directly: the pool must have been
// opened with github.com/jackc/pgx/v5/stdlib (driver name "pgx"), or a
// driver whose connections have a Conn method returning a connection with
// WaitForNotification(context.Context) (such as *pgx.Conn); otherwise it
// returns an error at once.
//
// On SQLite and MySQL, which have no notifications, it returns an error
// wrapping errors.ErrUnsupported at once: the plugin treats an error from
// ListenForWork as "poll" (Config.IdleRecheck).
func (s *Store) ListenForWork(ctx context.Context, wake func()) error {
	if s.d.notify() == "" {
		return fmt.Errorf("sqlstore: listen for work: %s has no notifications: %w", s.d.Name(), errors.ErrUnsupported)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: listen for work: %w", ctxErr(ctx, err))
	}
	defer conn.Close()
	// The channel is the validated table prefix and "work": a safe
	// identifier.
	if _, err := conn.ExecContext(ctx, "LISTEN "+s.channel); err != nil {
		return fmt.Errorf("sqlstore: listen for work: %w", ctxErr(ctx, err))
	}
	err = conn.Raw(func(dc any) error {
		wait, err := notificationWaiter(dc)
		if err != nil {
			return err
		}
		wake()
		for {
			if err := wait(ctx); err != nil {
				// The connection was interrupted mid-wait, or is listening
				// still: either way it must not go back to the pool.
				return errors.Join(driver.ErrBadConn, err)
			}
			wake()
		}
	})
	return fmt.Errorf("sqlstore: listen for work: %w", ctxErr(ctx, err))
}

// ctxErr returns ctx's error when ctx has ended (it is why err happened),
// and err otherwise.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// notificationWaiter finds, by reflection (the package imports no driver),
// the WaitForNotification method of the connection behind a pgx stdlib
// driver connection: dc.Conn().WaitForNotification(ctx).
func notificationWaiter(dc any) (func(context.Context) error, error) {
	notSupported := fmt.Errorf("the driver's connection (%T) gives no pgx connection: open the pool with github.com/jackc/pgx/v5/stdlib", dc)
	getConn := reflect.ValueOf(dc).MethodByName("Conn")
	if !getConn.IsValid() || getConn.Type().NumIn() != 0 || getConn.Type().NumOut() != 1 {
		return nil, notSupported
	}
	pc := getConn.Call(nil)[0]
	if pc.Kind() == reflect.Pointer && pc.IsNil() {
		return nil, notSupported
	}
	wait := pc.MethodByName("WaitForNotification")
	ctxType := reflect.TypeFor[context.Context]()
	errType := reflect.TypeFor[error]()
	if !wait.IsValid() || wait.Type().NumIn() != 1 || !ctxType.AssignableTo(wait.Type().In(0)) ||
		wait.Type().NumOut() != 2 || !wait.Type().Out(1).Implements(errType) {
		return nil, notSupported
	}
	return func(ctx context.Context) error {
		out := wait.Call([]reflect.Value{reflect.ValueOf(ctx)})
		if err, _ := out[1].Interface().(error); err != nil {
			return err
		}
		return nil
	}, nil
}
