//! Row-value comparisons, `(a, b) > ($1, $2)`, for keyset pagination. Unlike
//! `a = $1 AND b > $2`, a row comparison can only be served by an index on
//! `(a, b)`, so no generic prepared plan in PostgreSQL walks the primary key
//! instead (reading every other user's rows when this user has fewer than a
//! page). Both backends understand it (SQLite since 3.15), and unlike a raw
//! `sql` fragment it keeps the statement in diesel's prepared cache.

use diesel::backend::Backend;
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::Bool;

macro_rules! row_comparison {
    ($(#[$doc:meta])* $name:ident, $operator:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, QueryId, ValidGrouping)]
        pub struct $name<L, R>(pub L, pub R);

        impl<L: Expression, R: Expression> Expression for $name<L, R> {
            type SqlType = Bool;
        }

        impl<L, R, DB> QueryFragment<DB> for $name<L, R>
        where
            DB: Backend,
            L: QueryFragment<DB>,
            R: QueryFragment<DB>,
        {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
                out.push_sql("(");
                self.0.walk_ast(out.reborrow())?;
                out.push_sql(concat!(") ", $operator, " ("));
                self.1.walk_ast(out.reborrow())?;
                out.push_sql(")");
                Ok(())
            }
        }

        impl<L, R, QS> AppearsOnTable<QS> for $name<L, R>
        where
            L: AppearsOnTable<QS>,
            R: AppearsOnTable<QS>,
        {
        }

        impl<L, R, QS> SelectableExpression<QS> for $name<L, R>
        where
            L: SelectableExpression<QS>,
            R: SelectableExpression<QS>,
        {
        }
    };
}

row_comparison!(
    /// `(left...) > (right...)`.
    RowGt,
    ">"
);
row_comparison!(
    /// `(left...) < (right...)`.
    RowLt,
    "<"
);
