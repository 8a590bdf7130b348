// A small JDBC client for pgwolf's end-to-end tests.
//
// Run as a single source file (Java 11+):
//   java -cp /usr/share/java/postgresql.jar tests/java/JdbcSmoke.java URL USER PASSWORD
// Prints `key=value` lines that tests/tests/jdbc.rs asserts, then `done`.
// Any failure propagates as an exception and a non-zero exit.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

public class JdbcSmoke {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: JdbcSmoke URL USER PASSWORD");
            System.exit(2);
        }
        try (Connection conn = DriverManager.getConnection(args[0], args[1], args[2])) {
            // Learned from the server_version ParameterStatus at startup.
            System.out.println("server_major=" + conn.getMetaData().getDatabaseMajorVersion());

            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT 40 + 2, current_user, current_setting('TimeZone')")) {
                rs.next();
                System.out.println("statement=" + rs.getInt(1));
                System.out.println("user=" + rs.getString(2));
                // pgjdbc sends the JVM's time zone as the TimeZone startup parameter.
                System.out.println("timezone=" + rs.getString(3));
            }

            // Ten executions: past pgjdbc's prepareThreshold (5), so the last
            // ones use a named server-side prepared statement.
            try (PreparedStatement ps = conn.prepareStatement("SELECT ?::int * 2, ? || '!'")) {
                long sum = 0;
                String last = null;
                for (int i = 1; i <= 10; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "hi" + i);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        sum += rs.getInt(1);
                        last = rs.getString(2);
                    }
                }
                System.out.println("prepared_sum=" + sum);
                System.out.println("prepared_last=" + last);
            }

            // A transaction with a batch insert.
            conn.setAutoCommit(false);
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TEMP TABLE jdbc_items (id int, name text) ON COMMIT DROP");
            }
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_items VALUES (?, ?)")) {
                for (int i = 0; i < 100; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "item " + i);
                    ps.addBatch();
                }
                ps.executeBatch();
            }
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT count(*), sum(id) FROM jdbc_items")) {
                rs.next();
                System.out.println("batch_count=" + rs.getLong(1));
                System.out.println("batch_sum=" + rs.getLong(2));
            }
            conn.commit();
            conn.setAutoCommit(true);

            // An error carries its SQLSTATE; the connection stays usable.
            try (Statement st = conn.createStatement()) {
                st.executeQuery("SELECT 1 / 0");
                System.out.println("error_state=none");
            } catch (SQLException e) {
                System.out.println("error_state=" + e.getSQLState());
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT 'still here'")) {
                rs.next();
                System.out.println("after_error=" + rs.getString(1));
            }
        }
        System.out.println("done");
    }
}
